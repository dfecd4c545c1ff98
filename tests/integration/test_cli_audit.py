"""`remediator audit verify` and `audit export` against a real PostgreSQL: the CLI as an
operator runs it, on a log, on a database with no schema yet, into a pipe nobody reads."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from receiver.store import Store
from tests.support.events import finished_runs
from tests.support.postgres import PostgresServer
from tests.support.served import cli, cli_into_closed_pipe, database_env, env_for


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
    assert code == 3  # not 1, a check that could not run (the tests below): a cron tells them
    assert f"audit log broken at entry {victim}" in err


@pytest.mark.parametrize("command", [["audit", "verify"], ["migrate"]], ids=" ".join)
async def test_an_unreachable_database_is_named(command: list[str]) -> None:
    code, _, err = await cli(database_env("postgresql://postgres@127.0.0.1:1/nothing"), *command)
    assert code == 1
    assert "Traceback" not in err
    assert err.startswith("error: cannot connect to the database")


NO_SCHEMA = "no audit log in this database"


@pytest.mark.parametrize("command", [["verify"], ["export", "--since", "1h"]])
async def test_audit_on_a_database_never_migrated_says_what_to_do(
    empty_database_url: str, command: list[str]
) -> None:
    code, out, err = await cli(database_env(empty_database_url), "audit", *command)
    assert (code, out) == (1, "")
    assert "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith(f"error: {NO_SCHEMA}")
    assert "remediator migrate" in line
    assert "REMEDIATOR_DATABASE_URL" in line


async def test_audit_verify_on_a_fresh_data_directory_says_what_to_do(
    embedded_dir: Path,
) -> None:
    # A fresh clone's default: no database URL, a data directory serve never ran on.
    code, _, err = await cli(env_for(embedded_dir), "audit", "verify")
    assert code == 1
    assert "Traceback" not in err
    assert f"error: {NO_SCHEMA}" in err


async def test_audit_export_into_a_closed_pipe_stops_quietly(
    store: Store, database_url: str
) -> None:
    await finished_runs(store, 1)
    code, err = await cli_into_closed_pipe(
        database_env(database_url), "audit", "export", "--since", "1h"
    )
    assert code == 1
    # `remediator audit export | head -1`: head left; nothing about the database, no traceback.
    assert "database" not in err
    assert "Traceback" not in err
    assert "error" not in err


async def test_audit_export_to_a_file_replaces_it_only_when_it_succeeds(
    store: Store, database_url: str, empty_database_url: str, tmp_path: Path
) -> None:
    """`-o FILE` opened FILE for writing before reading the log: an export that failed (here a
    database with no schema) left FILE empty, the last export it held lost."""
    shipped = tmp_path / "audit.jsonl"
    shipped.write_text('{"id": 1}\n')
    shipped.chmod(0o640)
    code, out, err = await cli(
        database_env(empty_database_url), "audit", "export", "-o", str(shipped)
    )
    assert code == 1, err
    assert f"error: {NO_SCHEMA}" in err
    assert shipped.read_text() == '{"id": 1}\n'
    # Nothing of the failed export is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl"]

    await finished_runs(store, 1)
    code, out, err = await cli(database_env(database_url), "audit", "export", "-o", str(shipped))
    assert code == 0, err
    assert "exported 4 audit entries" in err
    assert len(shipped.read_text().splitlines()) == 4
    assert shipped.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl"]

    # A path that is not a regular file is written as it is, not replaced.
    code, out, err = await cli(database_env(database_url), "audit", "export", "-o", "/dev/stdout")
    assert code == 0, err
    assert len(out.splitlines()) == 4
