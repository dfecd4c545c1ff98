"""`remediator audit verify` against a real PostgreSQL: the CLI as an operator runs it."""

from __future__ import annotations

import asyncpg

from receiver.store import Store
from tests.support.events import finished_runs
from tests.support.postgres import PostgresServer
from tests.support.served import cli, database_env


async def test_audit_verify_passes_on_an_intact_log_and_names_a_tampered_entry(
    store: Store, database_url: str, pg_server: PostgresServer
) -> None:
    await finished_runs(store, 1)
    code, out, err = await cli(database_env(database_url), "audit", "verify")
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

    code, out, err = await cli(database_env(database_url), "audit", "verify")
    assert code == 1
    assert f"audit log broken at entry {victim}" in err


async def test_audit_verify_with_an_unreachable_database_says_so() -> None:
    code, _, err = await cli(
        database_env("postgresql://postgres@127.0.0.1:1/nothing"), "audit", "verify"
    )
    assert code == 1
    assert "cannot connect to the database" in err
