"""The commands that open the store themselves (``remediator migrate``, ``audit verify``, ``audit
export``) behind a real PgBouncer (tests/support/pgbouncer.py): a transaction pooler that
``database.pooler`` does not name is refused as ``serve`` refuses it, before anything changes,
run after run; named, with ``database.direct_url``, the commands work through it; a session
pooler with one server connection is not waited on (README, "PgBouncer").

Without the check each command's first run through an idle pooler worked and left asyncpg's
prepared statements on the pooler's server connection, and every later run died on them with a
traceback (``prepared statement "__asyncpg_stmt_1__" already exists``)."""

from __future__ import annotations

import asyncpg
import pytest

from receiver.store.migrate import load_migrations
from tests.support.pgbouncer import PgBouncer, start
from tests.support.postgres import PostgresServer
from tests.support.served import cli, database_env

pytestmark = pytest.mark.postgres

# serve's refusal (test_pgbouncer_mistakes.py), as these commands print it.
REFUSED = "error: database_url (REMEDIATOR_DATABASE_URL): "
FIX = (
    "(database.pooler is none): the database is behind a transaction pooler: set"
    " database.pooler: pgbouncer-transaction (REMEDIATOR_DATABASE_POOLER) and"
    " database.direct_url (REMEDIATOR_DATABASE_DIRECT_URL), then restart"
)
RUNS = 3  # PgBouncer's server connections keep a run's prepared statements for the next


async def _versions(direct_url: str) -> list[int] | None:
    """The migrations recorded in the database, read directly; None without the table."""
    conn = await asyncpg.connect(direct_url)
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
            return None
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [row["version"] for row in rows]
    finally:
        await conn.close()


def _assert_refused(code: int, out: str, err: str) -> None:
    assert (code, out) == (2, ""), err
    [line] = err.splitlines()
    assert line.startswith(REFUSED), line
    assert FIX in line


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh database", "migrated database"])
async def test_migrate_refuses_an_unnamed_transaction_pooler_and_changes_nothing(
    pgbouncer: PgBouncer, empty_database_url: str, database_url: str, fresh: bool
) -> None:
    """Before: exit 0 the first time (the fresh database migrated through the pooler), then
    exit 1 with a traceback. Now every run is refused, and the schema is as it was."""
    direct = empty_database_url if fresh else database_url
    before = await _versions(direct)
    env = database_env(pgbouncer.through(direct))
    for _ in range(RUNS):
        _assert_refused(*await cli(env, "migrate"))
    assert await _versions(direct) == before
    assert before is None if fresh else before == [m.version for m in load_migrations()]


@pytest.mark.parametrize("command", [["verify"], ["export", "--since", "1h"]], ids=" ".join)
async def test_the_audit_commands_refuse_an_unnamed_transaction_pooler(
    pgbouncer: PgBouncer, database_url: str, command: list[str]
) -> None:
    """Before: the first run read the log through the pooler, every later one died on the
    statements it left there (exit 1, a traceback)."""
    env = database_env(pgbouncer.through(database_url))
    for _ in range(RUNS):
        _assert_refused(*await cli(env, "audit", *command))


async def test_the_commands_work_through_a_transaction_pooler_they_are_told_of(
    pgbouncer: PgBouncer, empty_database_url: str
) -> None:
    """As the README configures it: ``migrate`` through the pooler (no statement cache), run
    after run; the audit commands over ``database.direct_url``."""
    env = database_env(pgbouncer.through(empty_database_url)) | {
        "REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction",
        "REMEDIATOR_DATABASE_DIRECT_URL": empty_database_url,
    }
    versions = [m.version for m in load_migrations()]
    code, out, err = await cli(env, "migrate")
    assert (code, out.strip()) == (
        0,
        "applied migrations " + ", ".join(f"{v:04d}" for v in versions),
    ), err
    for _ in range(RUNS - 1):
        code, out, err = await cli(env, "migrate")
        assert (code, out.strip()) == (0, "database schema is up to date"), err
    assert await _versions(empty_database_url) == versions
    for _ in range(RUNS - 1):
        code, out, err = await cli(env, "audit", "verify")
        assert (code, out.strip()) == (0, "audit log intact: 0 entries verified"), err
        code, out, err = await cli(env, "audit", "export")
        assert (code, out, err.strip()) == (0, "", "exported 0 audit entries")


async def test_a_session_pooler_with_one_server_connection_is_not_waited_on(
    pg_server: PostgresServer, database_url: str
) -> None:
    """The probe's second connection gets no server connection from a session pool of one;
    it gives up after 5 s and the command, which needs one, works as it did before the
    probe. Waiting on it, the command failed after PgBouncer's query_wait_timeout (120 s)."""
    bouncer = start(pg_server, mode="session", pool_size=1)
    try:
        env = database_env(bouncer.through(database_url))
        code, out, err = await cli(env, "migrate", timeout_s=60)
        assert (code, out.strip()) == (0, "database schema is up to date"), err
        code, out, err = await cli(env, "audit", "verify", timeout_s=60)
        assert (code, out.strip()) == (0, "audit log intact: 0 entries verified"), err
    finally:
        bouncer.stop()
