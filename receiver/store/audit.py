"""The append-only audit log: a hash chain over every change to a run, and its verification.

Each row carries the hash of the row before it (see migrations/0001_init.sql), computed while
the single audit_head row is held FOR UPDATE, so the chain stays linear with many writers.
Writes that change a run append their row with ``append_in_tx`` in the same transaction, so the
audit log and the run table cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.records import AuditCheck, as_utc, canonical_json

__all__ = ["AuditLog", "append_in_tx"]


def _hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()


def _content(
    *,
    audit_id: int,
    at: datetime,
    kind: str,
    run_id: str | None,
    fingerprint: str | None,
    data: Any,
) -> dict[str, Any]:
    return {
        "id": audit_id,
        "at": as_utc(at).isoformat(timespec="microseconds"),
        "kind": kind,
        "run_id": run_id,
        "fingerprint": fingerprint,
        "data": data,
    }


async def append_in_tx(
    conn: Any,
    kind: str,
    run_id: str | None,
    fingerprint: str | None,
    data: Mapping[str, Any],
) -> int:
    """Append one audit row on ``conn``, inside the caller's transaction; returns its id.

    The caller's change and its audit row commit or roll back together.
    """
    # The audit_head row lock serialises appenders, so ids and the chain grow together.
    head = await conn.fetchrow(
        """SELECT last_hash, nextval('audit_log_id_seq') AS id, clock_timestamp() AS at
           FROM audit_head FOR UPDATE"""
    )
    # Round-trip through JSON first: the hash must be over what jsonb will give back.
    normalised = json.loads(canonical_json(dict(data)))
    content = _content(
        audit_id=head["id"],
        at=head["at"],
        kind=kind,
        run_id=run_id,
        fingerprint=fingerprint,
        data=normalised,
    )
    digest = _hash(head["last_hash"], content)
    await conn.execute(
        """
        WITH ins AS (
            INSERT INTO audit_log (id, at, kind, run_id, fingerprint, data, prev_hash, hash)
            VALUES ($1, $2, $3, $4::uuid, $5, $6::jsonb, $7, $8)
            RETURNING id, hash
        )
        UPDATE audit_head SET last_id = ins.id, last_hash = ins.hash FROM ins
        """,
        head["id"],
        head["at"],
        kind,
        run_id,
        fingerprint,
        canonical_json(normalised),
        head["last_hash"],
        digest,
    )
    audit_id: int = head["id"]
    return audit_id


class AuditLog(Database):
    """Append audit rows of their own, read one run's trail, verify the whole chain."""

    async def append_audit(
        self,
        kind: str,
        run_id: str | None = None,
        fingerprint: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one audit row in its own transaction; returns its id."""
        async with self._tx() as conn:
            return await append_in_tx(conn, kind, run_id, fingerprint, data or {})

    async def audit_entries(self, run_id: str) -> list[dict[str, Any]]:
        """The audit rows of one run, oldest first (for the timeline)."""
        with translate():
            rows = await self._pool.fetch(
                """SELECT id, at, kind, run_id::text AS run_id, fingerprint, data::text AS data
                   FROM audit_log WHERE run_id = $1::uuid ORDER BY id""",
                run_id,
            )
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    async def verify_audit(self, *, batch: int = 1000) -> AuditCheck:
        """Recompute the chain; the first row whose hash or link does not match is reported.

        Also checks that the chain ends where audit_head says it does, which catches rows
        removed from the end.
        """
        prev_hash = ""
        checked = 0
        last_id = 0
        # One snapshot for the head and the rows: appenders change both in one transaction.
        async with self._tx(isolation="repeatable_read", readonly=True) as conn:
            head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")
            while True:
                rows = await conn.fetch(
                    """SELECT id, at, kind, run_id::text AS run_id, fingerprint,
                              data::text AS data, prev_hash, hash
                       FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2""",
                    last_id,
                    batch,
                )
                if not rows:
                    break
                for row in rows:
                    checked += 1
                    if row["prev_hash"] != prev_hash:
                        return AuditCheck(False, row["id"], checked, "broken link to previous")
                    content = _content(
                        audit_id=row["id"],
                        at=row["at"],
                        kind=row["kind"],
                        run_id=row["run_id"],
                        fingerprint=row["fingerprint"],
                        data=json.loads(row["data"]),
                    )
                    if _hash(prev_hash, content) != row["hash"]:
                        return AuditCheck(False, row["id"], checked, "content does not match hash")
                    prev_hash = row["hash"]
                    last_id = row["id"]
        if head is not None and (head["last_hash"] != prev_hash):
            return AuditCheck(False, head["last_id"], checked, "rows missing at the end")
        return AuditCheck(True, None, checked)
