"""The store's audit chain against a real PostgreSQL server: it verifies, is append-only, finds a
tampered or deleted row, and stays linear under concurrent writers."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from receiver.model import RunOutcome
from receiver.store import Store
from tests.support.events import TARGET, alert_event

pytestmark = pytest.mark.postgres


async def _some_history(store: Store) -> str:
    run_id = await store.create_run(rule="r", event=alert_event(), target=TARGET, dry_run=False)
    assert run_id is not None
    await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(run_id, idx=0, action="x.y", outcome="ok", after={"n": 1.5})
    await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED)
    await store.append_audit("config.reload", data={"rules": 4, "name": "ünïcode"})
    return run_id


async def test_audit_chain_verifies_and_is_append_only(store: Store, database_url: str) -> None:
    run_id = await _some_history(store)
    check = await store.verify_audit()
    assert check.ok
    assert check.checked == 5
    ok, bad = check
    assert (ok, bad) == (True, None)
    kinds = [e["kind"] for e in await store.audit_entries(run_id)]
    assert kinds == ["run.created", "run.outcome", "step", "run.outcome"]

    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("UPDATE audit_log SET kind = 'x'")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("DELETE FROM audit_log")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("TRUNCATE audit_log")
    finally:
        await conn.close()


async def test_audit_verify_detects_a_tampered_row(store: Store, database_url: str) -> None:
    await _some_history(store)
    conn = await asyncpg.connect(database_url)
    try:
        target_id = await conn.fetchval("SELECT id FROM audit_log ORDER BY id OFFSET 2 LIMIT 1")
        # What an attacker with owner rights would do: switch the guard off and edit history.
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute(
            "UPDATE audit_log SET data = $2::jsonb WHERE id = $1",
            target_id,
            json.dumps({"outcome": "ok", "message": "nothing to see"}),
        )
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        await conn.close()
    check = await store.verify_audit()
    assert not check.ok
    assert check.first_bad_id == target_id


async def test_audit_verify_detects_a_deleted_row(store: Store, database_url: str) -> None:
    await _some_history(store)
    conn = await asyncpg.connect(database_url)
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM audit_log ORDER BY id")]
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute("DELETE FROM audit_log WHERE id = $1", ids[1])
        await conn.execute("DELETE FROM audit_log WHERE id = $1", ids[-1])  # the tail, too
    finally:
        await conn.close()
    check = await store.verify_audit()
    assert not check.ok
    assert check.first_bad_id == ids[2]


async def test_audit_chain_stays_linear_under_concurrent_writers(store: Store) -> None:
    await asyncio.gather(*(store.append_audit("test", data={"i": i}) for i in range(60)))
    await asyncio.gather(
        *(
            store.create_run(
                rule="r", event=alert_event(fingerprint=f"{i:016x}"), target=TARGET, dry_run=False
            )
            for i in range(20)
        )
    )
    check = await store.verify_audit()
    assert check.ok, check
    assert check.checked == 80
