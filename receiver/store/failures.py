"""How a queued item fails: a bounded number of failed attempts, then the dead-letter state.

Both queues (alert events and jobs) count failed attempts in ``failures``, apart from
``attempts`` (every claim, deferrals included): an attempt fails when processing raised, or when
the worker holding it died (its lease ran out; the claim that takes it up again counts that).
An item whose failures reach the bound leaves the queue as ``dead``, with its last error, and
stays until an operator retries or drops it (queues.py). Its death is audited in the same
transaction. Waiting is not failing: a retry the pipeline asks for (guards unreachable, a
guard's ``retry_at``) or a store outage releases the item with ``release_event``/``release_job``
and counts nothing. A job whose payload grew while its attempt ran (work merged in that no
attempt has seen) is not made dead by that attempt's failure: its count starts again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from receiver.store.audit import append_in_tx
from receiver.store.canonical import canonical_json
from receiver.store.database import Database
from receiver.store.errors import StoreUnavailable
from receiver.store.leases import EVENTS, JOBS, QueueTable, held_where

__all__ = ["Failures"]


class Failures(Database):
    """Settle a claim whose attempt failed: back to pending, or dead at the bound."""

    async def fail_event(
        self,
        event_id: int,
        owner: str,
        attempts: int,
        error: str | None,
        *,
        delay_s: float,
        max_failures: int,
        count: bool = True,
    ) -> str | None:
        """Record a failed attempt of a claimed event; see ``fail``."""
        return await self.fail(
            EVENTS, event_id, owner, attempts, error, delay_s, max_failures, count
        )

    async def settle_unreadable(self, event_id: int, owner: str, attempts: int, error: str) -> None:
        """Settle a claimed event that cannot be read back (``claims.claimed_events``) dead at
        once, ``error`` its last error, audited ``event.dead``: no attempt would read it, so
        none is made. Out of reach, the store leaves it claimed: its lease runs out, and the
        claim that takes it up again counts that failure and settles it so."""
        with contextlib.suppress(StoreUnavailable):
            await self.fail(EVENTS, event_id, owner, attempts, error, 0.0, 1, True)

    async def fail_job(
        self,
        job_id: int,
        owner: str,
        attempts: int,
        error: str | None,
        *,
        delay_s: float,
        max_failures: int,
        count: bool = True,
        seen: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Record a failed attempt of a claimed job; see ``fail``. ``seen``: the payload the
        attempt was claimed with. Keys merged into the job's payload since (another ending's
        ``finish_end`` entries, ``enqueue`` of a claimed job) were never attempted: the job
        is then not made dead by this failure, but pending again, due at once or at the rerun
        asked for, its failures counted afresh, as a new job's would be (not its attempts: a
        claim's fence names them, and a count that came back to a value some earlier claim
        had would let that claim's late writes through). Before, it went dead with them
        undone."""
        return await self.fail(
            JOBS, job_id, owner, attempts, error, delay_s, max_failures, count, seen
        )

    async def fail(
        self,
        queue: QueueTable,
        item_id: int,
        owner: str,
        attempts: int,
        error: str | None,
        delay_s: float,
        max_failures: int,
        count: bool,
        seen: Mapping[str, Any] | None = None,
    ) -> str | None:
        """One more failure (none with ``count`` False: the claim found one already counted),
        then ``'dead'`` when ``failures`` reaches ``max_failures`` (audited as ``KIND.dead``),
        else ``'pending'`` again, due in ``delay_s`` seconds. ``error`` becomes ``last_error``.
        ``seen`` (jobs only): the payload the attempt was claimed with; one that grew since
        restarts the count instead (``fail_job``). None when ``owner`` no longer holds the
        lease under its claim ``attempts`` (the item's count of claims as the claim left it;
        fence.py): nothing changed."""
        added = 1 if count else 0
        # New work merged in while the attempt ran (``enqueue`` of a claimed job sets its
        # rerun_at): no attempt has seen it yet.
        grew = "false" if seen is None else "(rerun_at IS NOT NULL AND NOT $8::jsonb @> payload)"
        dies = f"NOT {grew} AND failures + $5::int >= $6"
        extra = [] if seen is None else [canonical_json(dict(seen))]
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""
                UPDATE {queue.table} SET
                    -- Every expression here reads the row as it was before this update.
                    failures = CASE WHEN {grew} THEN 0 ELSE failures + $5::int END,
                    state = CASE WHEN {dies} THEN 'dead' ELSE 'pending' END,
                    dead_at = CASE WHEN {dies} THEN remediator_now() END,
                    not_before = {queue.release_due}, {queue.release_reset}
                    last_error = coalesce($4, last_error),
                    lease_owner = NULL, lease_until = NULL
                WHERE {held_where("$7")}
                RETURNING state, failures, attempts, last_error, {queue.subject}
                """,
                item_id,
                owner,
                max(0.0, float(delay_s)),
                error,
                added,
                max(1, max_failures),
                attempts,
                *extra,
            )
            if row is None:
                return None
            if row["state"] == "dead":
                run_id, fingerprint, data = queue.audit(row)
                data.update(
                    attempts=row["attempts"],
                    failures=row["failures"],
                    last_error=row["last_error"],
                )
                await append_in_tx(conn, f"{queue.kind}.dead", run_id, fingerprint, data)
        state: str = row["state"]
        return state
