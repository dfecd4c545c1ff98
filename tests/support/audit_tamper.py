"""Tampering with the audit log as someone with write access to the database would: the
table refuses UPDATE and DELETE by trigger, so the attacker disables it (as the owner can).
Helpers of the tests of `remediator audit verify`."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from receiver.store import Store, canonical_json
from tests.support.events import finished_runs
from tests.support.served import cli, database_env

__all__ = ["broken", "forge", "insert", "row_of", "tampered"]


@contextlib.asynccontextmanager
async def tampered(store: Store, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the append-only trigger off, over a log of ids 1..12 (three runs of
    four rows) that verifies."""
    await finished_runs(store, 3)
    code, out, err = await cli(database_env(database_url), "audit", "verify")
    assert code == 0, err
    assert "audit log intact: 12 entries verified" in out
    conn = await asyncpg.connect(database_url)
    await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    try:
        yield conn
    finally:
        await conn.close()


async def broken(database_url: str) -> str:
    """`remediator audit verify`'s stderr, asserting it exits 3 (a broken chain: not 1, a check
    that could not run)."""
    code, out, err = await cli(database_env(database_url), "audit", "verify")
    assert code == 3, (code, out, err)
    return err


async def row_of(conn: asyncpg.Connection, audit_id: int) -> dict[str, Any]:
    """The audit row ``audit_id``, its data as text."""
    row = await conn.fetchrow(
        """SELECT id, at, kind, run_id::text AS run_id, fingerprint, data::text AS data,
                  prev_hash, hash FROM audit_log WHERE id = $1""",
        audit_id,
    )
    assert row is not None
    return dict(row)


def forge(row: dict[str, Any], audit_id: int, prev_hash: str, **changes: Any) -> dict[str, Any]:
    """A row with a link and a hash made the way the service makes them (the hash is not
    keyed: anyone can compute it)."""
    forged = {**row, **changes, "id": audit_id, "prev_hash": prev_hash}
    content = {
        "id": audit_id,
        "at": forged["at"].isoformat(timespec="microseconds"),
        "kind": forged["kind"],
        "run_id": forged["run_id"],
        "fingerprint": forged["fingerprint"],
        "data": json.loads(forged["data"]),
    }
    forged["hash"] = hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()
    return forged


async def insert(conn: asyncpg.Connection, row: dict[str, Any]) -> None:
    """Put ``row`` (as ``row_of`` or ``forge`` give one) into the log as it is."""
    await conn.execute(
        """INSERT INTO audit_log (id, at, kind, run_id, fingerprint, data, prev_hash, hash)
           VALUES ($1, $2, $3, $4::uuid, $5, $6::jsonb, $7, $8)""",
        row["id"],
        row["at"],
        row["kind"],
        row["run_id"],
        row["fingerprint"],
        row["data"],
        row["prev_hash"],
        row["hash"],
    )
