"""`remediator audit verify` against a real PostgreSQL: the CLI as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from receiver.intake import events_of
from receiver.model import RunOutcome, Target
from receiver.store import Store
from tests.support.payloads import alert, notification
from tests.support.postgres import PostgresServer


async def _cli(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env["REMEDIATOR_DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _history(store: Store) -> None:
    (new,) = events_of(notification(alert({"alertname": "HighMemoryUsage"})))
    run_id = await store.create_run(
        rule="r", event=new.as_event(1), target=Target("Deployment", "shop", "web"), dry_run=True
    )
    assert run_id is not None
    await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(run_id, idx=0, action="kubernetes.rollout_restart", outcome="ok")
    await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED)


async def test_audit_verify_passes_on_an_intact_log_and_names_a_tampered_entry(
    store: Store, database_url: str, pg_server: PostgresServer
) -> None:
    await _history(store)
    code, out, err = await _cli(database_url, "audit", "verify")
    assert code == 0, err
    assert "audit log intact: 4 entries verified" in out

    conn = await asyncpg.connect(database_url)
    try:
        victim = await conn.fetchval("SELECT id FROM audit_log ORDER BY id OFFSET 1 LIMIT 1")
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute(
            'UPDATE audit_log SET data = \'{"outcome": "ok"}\' WHERE id = $1', victim
        )
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        await conn.close()

    code, out, err = await _cli(database_url, "audit", "verify")
    assert code == 1
    assert f"audit log broken at entry {victim}" in err


async def test_audit_verify_with_an_unreachable_database_says_so() -> None:
    code, _, err = await _cli("postgresql://postgres@127.0.0.1:1/nothing", "audit", "verify")
    assert code == 1
    assert "cannot connect to the database" in err
