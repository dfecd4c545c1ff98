"""Group commit of the worker's one-statement writes (``Runs.create_run``): while one
transaction is on its way, the statements that arrive meanwhile wait, and the next transaction
takes them all (``receiver.batching.Coalescer``).

Each statement is whole on its own (a run with its steps and audit rows, and for a refusal its
event's completion), and idempotent (a run exists once per rule and occurrence), so several in
one transaction do what each does alone; they cost less. Every transaction that appends to the
audit chain is sealed at its commit under the one head lock, held until its commit record is
flushed (migration 0012): in a storm those commits ran one after another, each with its own
fsync, and the workers queued on the head row. A group pays one seal, one head lock, one commit
and one fsync, and its statements go in one round trip (asyncpg's ``fetchmany`` pipelines the
executions of one prepared statement).

A statement that fails on its own must not fail the others: the group is then rolled back
and each of its statements written again in a transaction of its own, so that only the guilty
one fails (as ``receiver.intake.EventBatcher`` does with notifications). A store out of reach
fails the whole group with ``StoreUnavailable``: every caller retries, and retrying is safe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from receiver.batching import Coalescer
from receiver.store.errors import StoreUnavailable, describe, translate

__all__ = ["MAX_GROUP", "GroupCommit", "one_by_one"]

_Call = TypeVar("_Call")

# The most statements one transaction takes: a group holds its rows locked until it commits.
MAX_GROUP = 32


async def one_by_one(
    calls: Sequence[_Call], send_one: Callable[[_Call], Awaitable[Sequence[Any]]]
) -> list[Any]:
    """Each of ``calls`` sent alone (``send_one`` answers it as a one-item list), after their
    batch failed as a whole: each one's answer, or the exception it failed with on its own.
    Once the store is out of reach (StoreUnavailable) the rest have that for an answer too."""
    outcomes: list[Any] = []
    for call in calls:
        try:
            outcomes.extend(await send_one(call))
        except StoreUnavailable as exc:
            outcomes.extend([exc] * (len(calls) - len(outcomes)))
            break
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


class _Unanswered(RuntimeError):
    """Statements that committed without one row each: their rows cannot be told apart."""


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    args: tuple[Any, ...]


class GroupCommit:
    """``await group.fetchrow(sql, *args)``: the statement's one row, once the transaction
    that wrote it has committed. Each statement must return exactly one row: otherwise
    RuntimeError, for every statement of its group once the group has committed (written,
    and never written again). ``pool``: an asyncpg pool. Raises StoreUnavailable when the
    store is out of reach, or what the statement raised when it failed on its own."""

    def __init__(self, pool: Any, *, max_group: int = MAX_GROUP, log: Any = None) -> None:
        self._pool = pool
        self._log: Any = log if log is not None else structlog.get_logger("remediator.store")
        self._coalescer: Coalescer[_Statement, Any] = Coalescer(
            self._write,
            max_batch=max_group,
            max_in_flight=2,
            stopped=lambda: StoreUnavailable("the write was interrupted: the service stopped"),
            # A write whose caller was cancelled is committed, or not, before the caller is
            # gone: the worker releases the event next (batching.Coalescer).
            wait_when_sent=True,
        )

    @property
    def transactions(self) -> int:
        """Groups written so far (tests, the bench)."""
        return self._coalescer.batches

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._coalescer(_Statement(sql, args))

    async def _write(self, group: list[_Statement]) -> Sequence[Any]:
        try:
            return await self._transaction(group)
        except (StoreUnavailable, _Unanswered):
            # Out of reach: nothing to tell. Unanswered: the group has committed, so writing
            # its statements again would run each of them twice.
            raise
        except Exception as exc:
            if len(group) == 1:
                return [exc]
            # Nothing of the group was written. Which statement is at fault cannot be told
            # from the error (whose message may quote any of them): write each alone.
            self._log.warning(
                "group commit failed; writing its statements one at a time",
                statements=len(group),
                error=describe(exc),
            )
        return await one_by_one(group, lambda statement: self._transaction([statement]))

    async def _transaction(self, group: list[_Statement]) -> list[Any]:
        """Write ``group`` in one transaction; its rows in order.

        One statement is sent as it would be alone (one round trip, its own implicit
        transaction). The executions of one text are pipelined by ``fetchmany``: every Bind and
        Execute in one message, then one Sync, so they are one implicit transaction, committed
        at the Sync, in one round trip. Several texts take an explicit transaction."""
        texts: dict[str, list[int]] = {}
        for index, statement in enumerate(group):
            texts.setdefault(statement.sql, []).append(index)
        rows: list[Any] = [None] * len(group)
        with translate():
            if len(group) == 1:
                rows = [await self._pool.fetchrow(group[0].sql, *group[0].args)]
            elif len(texts) == 1:
                rows = await self._pool.fetchmany(group[0].sql, [s.args for s in group])
            else:
                async with self._pool.acquire() as conn, conn.transaction():
                    for sql, indexes in texts.items():
                        answers = await conn.fetchmany(sql, [group[i].args for i in indexes])
                        for i, row in zip(indexes, answers, strict=True):
                            rows[i] = row
        if len(rows) != len(group) or any(row is None for row in rows):
            # Found after the commit: the statements are written, their answers lost.
            raise _Unanswered(
                f"{len(group)} statements gave {len(rows)} rows: each must return exactly one"
            )
        return list(rows)
