"""`migrate` and the audit commands as a database user without the rights they need (the least
privilege an SRE gives a service's account): one line naming the setting, what PostgreSQL
refused and its SQLSTATE, exit 1, as `serve` says it; not asyncpg's traceback
(``InsufficientPrivilegeError: permission denied for table schema_migrations``,
``InvalidSchemaNameError: no schema has been selected to create in``)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from tests.support.postgres import PostgresServer
from tests.support.served import cli, database_env

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def nobody(pg_server: PostgresServer) -> AsyncIterator[tuple[str, str]]:
    """(role, password) of a login role that may connect and nothing more."""
    role, password = f"nobody_{secrets.token_hex(4)}", secrets.token_hex(16)
    conn = await asyncpg.connect(pg_server.url("postgres"))
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        yield role, password
    finally:
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")
        await conn.close()


async def _as(database_url: str, role: str, password: str) -> str:
    """``database_url`` as ``role``, after taking CREATE on its public schema from everyone
    (PostgreSQL 15 gives none; earlier ones give it to all)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    finally:
        await conn.close()
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}:{quote(password, safe='')}@{host}"))


@pytest.mark.parametrize(
    "command", [["migrate"], ["audit", "verify"], ["audit", "export"]], ids=" ".join
)
async def test_a_user_without_the_rights_gets_one_line_naming_the_refusal(
    database_url: str, empty_database_url: str, nobody: tuple[str, str], command: list[str]
) -> None:
    role, password = nobody
    # migrate on a database with nothing in it (it would create the tables); the audit
    # commands on a migrated one (they read its tables).
    target = empty_database_url if command == ["migrate"] else database_url
    url = await _as(target, role, password)
    code, out, err = await cli(database_env(url), *command)
    assert (code, out) == (1, ""), err
    assert "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith("error: REMEDIATOR_DATABASE_URL: PostgreSQL at "), line
    assert "refused: " in line
    assert "SQLSTATE" in line
    assert password not in line
