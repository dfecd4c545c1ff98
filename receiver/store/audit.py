"""The append-only audit log: a hash chain over every change, its verification and export.

Each row carries the hash of the row before it (see migrations/0001_init.sql), computed while
the single audit_head row is held FOR UPDATE, so the chain stays linear with many writers; since
migration 0012 that happens when the appending transaction commits, so the lock is held for the
commit only. Writes that change a run append their row with ``append_in_tx`` in the same
transaction, so the audit log and the run table cannot disagree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from receiver.store.audit_rows import (
    AT_COLUMNS,
    CHAIN_SQL,
    at_unreadable,
    chain_row,
    linked,
    renumbered_from,
)
from receiver.store.canonical import audit_data, canonical_json
from receiver.store.chain import ChainRow, diagnose, diagnose_end
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.records import AuditCheck, as_utc
from receiver.store.stored_json import OBJECT, stored_data, unreadable_why

__all__ = [
    "AuditLog",
    "OnceEntry",
    "append_in_tx",
    "audit_insert_sql",
    "review_data",
]


async def append_in_tx(
    conn: Any,
    kind: str,
    run_id: str | None,
    fingerprint: str | None,
    data: Mapping[str, Any],
) -> None:
    """Queue one audit row on ``conn``, inside the caller's transaction; one statement, no lock.

    The row is chained when the transaction commits (migrations/0012_audit_sealed_at_commit.sql,
    0029_audit_seal_in_one_statement.sql: a deferred trigger takes the audit_head lock, gives
    the transaction's rows their ids and times, hashes them and writes them in one INSERT), so
    the caller's change and its audit row commit or roll back together, and no appender holds
    the head while its transaction is still running. Everything hashed but the id and the time
    is built here, with the same ``canonical_json`` the verifier uses, so the database never has
    to reproduce Python's JSON escaping; the data is queued once, and the seal puts it in the
    hashed text itself (migrations/0040_audit_queue_holds_data_once.sql).
    """
    await conn.execute(
        """INSERT INTO audit_pending (kind, run_id, fingerprint, data, hashed_print, hashed_end)
           VALUES ($1, $2::uuid, $3, $4, $5, $6)""",
        kind,
        run_id,
        fingerprint,
        audit_data(data),
        canonical_json(fingerprint),
        f'"kind":{canonical_json(kind)},"run_id":{canonical_json(run_id)}',
    )


def audit_insert_sql(
    source: str, *, kind: str, run_id: str, fingerprint: str, data: str, order_by: str = ""
) -> str:
    """SQL that queues one audit row per row of ``source`` (a CTE or subquery of the caller's
    statement), for an ``append_in_tx`` folded into a bigger statement: one round trip instead
    of three. The arguments are SQL expressions: ``kind`` and ``data`` (text, the latter from
    ``audit_data``) usually parameters, ``run_id`` (uuid) and ``fingerprint`` (text) columns of
    ``source``. PostgreSQL's ``to_json`` writes a string as ``canonical_json`` does (the same
    escapes: short ones for backspace, form feed, newline, return and tab, ``u00XX`` ones for
    the other control characters, UTF-8 kept; tests/integration/test_audit_sealing.py holds the
    two to it). Rows of one statement are queued, and so chained, in the order of ``order_by``
    (an SQL expression over ``source``; none: the order ``source`` gives them)."""
    return f"""INSERT INTO audit_pending (kind, run_id, fingerprint, data, hashed_print, hashed_end)
        SELECT {kind}, {run_id}, {fingerprint}, {data},
               coalesce(to_json(({fingerprint})::text)::text, 'null'),
               '"kind":' || to_json(({kind})::text)::text || ',"run_id":'
                   || coalesce(to_json(({run_id})::text)::text, 'null')
        FROM {source}{f" ORDER BY {order_by}" if order_by else ""}"""


@dataclass(frozen=True, slots=True)
class OnceEntry:
    """An audit row of no run to append at most once (``AuditLog.append_once``): ``key`` names
    it uniquely and for ever, ``occurred_at`` is when what it records happened; ``late``: it
    is written after its own attempt failed, so its row says so."""

    key: str
    kind: str
    data: Mapping[str, Any]
    occurred_at: datetime
    late: bool = False


_ONCE_SQL = "INSERT INTO audit_once (key) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true"


class AuditLog(Database):
    """Append audit rows of their own, read one run's trail, verify the whole chain."""

    async def append_audit(
        self,
        kind: str,
        run_id: str | None = None,
        fingerprint: str | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> None:
        """Append one audit row in its own transaction (chained when it commits).

        ``timeout_s``: give up after that many seconds, a connection included, with
        StoreUnavailable (a service stopping must not wait on a store that went away: behind
        PgBouncer a connection waits for a server that is not coming)."""
        if timeout_s is None:
            async with self._tx() as conn:
                await append_in_tx(conn, kind, run_id, fingerprint, data or {})
            return
        async with self._within(timeout_s) as conn, conn.transaction():
            await append_in_tx(conn, kind, run_id, fingerprint, data or {})

    async def append_once(self, entries: Sequence[OnceEntry]) -> list[str]:
        """Append the rows of ``entries`` whose key was never appended, in one transaction, in
        the order given (so chained in that order); the keys appended. A late entry's row adds
        ``"recorded_late": true``, ``"occurred_at"`` and ``"recorded_at"`` (the transaction's
        time) to its data. Idempotent across callers: a key appended before (by any process)
        appends nothing, and a caller that meets a key another transaction holds uncommitted
        waits for it (migrations/0022_audit_once.sql). StoreUnavailable; a store view bounded
        by ``bounded(t)`` gives up the whole transaction at its deadline."""
        written: list[str] = []
        async with self._tx() as conn:
            recorded_at: datetime | None = None
            for entry in entries:
                if not await conn.fetchval(_ONCE_SQL, entry.key):
                    continue
                data = dict(entry.data)
                if entry.late:
                    recorded_at = recorded_at or await conn.fetchval("SELECT remediator_now()")
                    assert recorded_at is not None
                    data |= {
                        "recorded_late": True,
                        "occurred_at": as_utc(entry.occurred_at).isoformat(),
                        "recorded_at": as_utc(recorded_at).isoformat(),
                    }
                await append_in_tx(conn, entry.kind, None, None, data)
                written.append(entry.key)
        return written

    async def audit_entries(self, run_id: str) -> list[dict[str, Any]]:
        """The audit rows of one run, oldest first (``GET /api/v1/runs/{id}``, rule tests). A
        row whose data or time cannot be read is given as ``export_audit`` gives it."""
        with translate():
            rows = await self._pool.fetch(
                f"""SELECT id, {AT_COLUMNS}, kind, run_id::text AS run_id, fingerprint,
                           data::text AS data
                    FROM audit_log WHERE run_id = $1::uuid ORDER BY id""",
                run_id,
            )
        entries = []
        for r in rows:
            data, unreadable = stored_data(r["data"])
            entry = {k: v for k, v in r.items() if k != "at_stored"} | {"data": data}
            if r["at_stored"] is not None:
                entry |= {"at": r["at_stored"], "at_unreadable": at_unreadable(r["at_stored"])}
            if unreadable is not None:
                entry["data_unreadable"] = unreadable
            entries.append(entry)
        return entries

    async def verify_audit(
        self,
        *,
        batch: int = 1000,
        lookahead: int = 1000,
        progress: Callable[[int, int | None], None] | None = None,
        every: int = 100_000,
    ) -> AuditCheck:
        """Recompute the chain by id; report the first row that was edited, inserted, deleted
        or reordered (``receiver.store.chain`` says how each is told), or a chain that does not
        end where audit_head says, or rows committed into audit_pending without being chained
        (problem ``unsealed``, no row id), or a table or column of the log that is gone
        (``deleted``, no row id). Streams the rows (a server-side cursor of ``batch`` rows);
        after a break it reads up to ``lookahead`` rows more to tell what happened.
        ``progress(checked, last_id)`` is called after every ``every`` rows (``last_id``: the
        head's, about how many rows there are; None without a head)."""
        try:
            return await self._verify(batch, lookahead, progress, every)
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
            # The schema is there (the CLI checks it first): a table or column of the log was
            # dropped, which read as the database refusing the user ("PostgreSQL ... refused").
            why = f"the audit log's tables were changed: {exc} (dropped)"
            return AuditCheck(False, None, 0, why, "deleted")

    async def _verify(
        self,
        batch: int,
        lookahead: int,
        progress: Callable[[int, int | None], None] | None,
        every: int,
    ) -> AuditCheck:
        checked = 0
        last: ChainRow | None = None
        before_last: ChainRow | None = None
        at_head: ChainRow | None = None
        first_after_head: int | None = None
        # One snapshot for the head and the rows: appenders change both in one transaction.
        async with self._tx(isolation="repeatable_read", readonly=True) as conn:
            heads = await conn.fetch("SELECT last_id, last_hash FROM audit_head LIMIT 2")
            head = heads[0] if heads else None
            head_id = head["last_id"] if head is not None else None
            async for row in conn.cursor(CHAIN_SQL + " ORDER BY id", prefetch=batch):
                checked += 1
                if progress is not None and checked % every == 0:
                    progress(checked, head_id)
                current = chain_row(row)
                if current.prev_hash != (last.hash if last else "") or not current.sound:
                    following = [
                        chain_row(r)
                        for r in await conn.fetch(
                            CHAIN_SQL + " WHERE id > $1 ORDER BY id LIMIT $2",
                            current.id,
                            lookahead,
                        )
                    ]
                    found = diagnose(
                        last,
                        current,
                        following,
                        before_last,
                        head_id=head_id,
                        first_after_head=first_after_head,
                        linked=await linked(conn, current.prev_hash),
                        renumbered_from=None if current.sound else renumbered_from(row),
                    )
                    if found is not None:
                        return AuditCheck(False, found.row_id, checked, found.reason, found.kind)
                before_last, last = last, current
                if head_id is not None and current.id == head_id:
                    at_head = current
                elif head_id is not None and current.id > head_id and first_after_head is None:
                    first_after_head = current.id
            # A committed transaction deletes its queued rows as it seals them, and another's
            # stay invisible until it has: a row this snapshot sees was committed unchained
            # (migration 0032 says how that could happen).
            unsealed = await conn.fetchval("SELECT count(*) FROM audit_pending")
            # Which row the head's hash is (hash is UNIQUE, so indexed): a head naming one row
            # while holding another's hash was edited.
            head_hash_row = (
                await conn.fetchval("SELECT id FROM audit_log WHERE hash = $1", head["last_hash"])
                if head is not None and last is not None and head["last_hash"] != last.hash
                else None
            )
        if head is None:
            return AuditCheck(False, None, checked, "audit_head is missing", "deleted")
        if len(heads) > 1:
            # Its key and check were dropped to add one: the seal then chains each row once
            # per head row.
            why = "audit_head was edited: it holds more than one row, the service keeps one"
            return AuditCheck(False, None, checked, why, "edited")
        if unsealed:
            return AuditCheck(
                False,
                None,
                checked,
                f"{unsealed} audit row(s) were committed without being chained (audit_pending)",
                "unsealed",
            )
        found = diagnose_end(
            last, head_id, head["last_hash"], at_head, first_after_head, head_hash_row
        )
        if found is not None:
            return AuditCheck(False, found.row_id, checked, found.reason, found.kind)
        return AuditCheck(True, None, checked)

    async def export_audit(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        after_id: int | None = None,
        batch: int = 500,
    ) -> AsyncIterator[dict[str, Any]]:
        """The audit rows of [since, until) with an id above ``after_id`` (each bound
        optional), oldest first, one at a time from a server-side cursor (never all in
        memory): ``{id, at, kind, run_id, fingerprint, data, prev_hash, hash}``, ``at`` as
        RFC 3339. A SIEM that keeps the ids and hashes holds a copy of the chain. A row whose
        data Python cannot read (only an edit of the table puts such data there) is exported
        all the same: ``data`` is the stored JSON as text, and ``data_unreadable`` says why;
        likewise a time Python cannot hold (``AT_COLUMNS``): ``at`` as PostgreSQL writes it,
        ``at_unreadable`` why."""
        clauses, args = ["true"], []
        for bound, clause in ((since, "at >= $"), (until, "at < $"), (after_id, "id > $")):
            if bound is not None:
                args.append(bound)
                clauses.append(f"{clause}{len(args)}")
        sql = f"""SELECT id, {AT_COLUMNS}, kind, run_id::text AS run_id, fingerprint,
                         data::text AS data, prev_hash, hash
                  FROM audit_log WHERE {" AND ".join(clauses)} ORDER BY id"""
        async with self._tx(isolation="repeatable_read", readonly=True) as conn:
            async for row in conn.cursor(sql, *args, prefetch=batch):
                data, unreadable = stored_data(row["data"])
                stored_at = row["at_stored"]
                entry = {
                    "id": row["id"],
                    "at": stored_at or as_utc(row["at"]).isoformat(timespec="microseconds"),
                    "kind": row["kind"],
                    "run_id": row["run_id"],
                    "fingerprint": row["fingerprint"],
                    "data": data,
                    "prev_hash": row["prev_hash"],
                    "hash": row["hash"],
                }
                if stored_at is not None:
                    entry["at_unreadable"] = at_unreadable(stored_at)
                if unreadable is not None:
                    entry["data_unreadable"] = unreadable
                yield entry


def review_data(text: str) -> tuple[dict[str, Any], str | None]:
    """A row's data as the review reads it (``stored_json``): the object and None; or, for data
    that cannot be read or is not a JSON object (every append writes one: only an edit of the
    table puts anything else there), an empty one and why, for the pages to mark the row."""
    data, unreadable = unreadable_why("data", text, OBJECT)
    return (data, None) if unreadable is None else ({}, unreadable)
