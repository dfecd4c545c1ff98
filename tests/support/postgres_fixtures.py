"""PostgreSQL fixtures: one real server per session, a fresh migrated database per test.

``pg_server``      the session's PostgresServer (managed: may be stopped and started by a test)
``pg_controlled``  the same server, or server_missing() when it is external and cannot be stopped
``database_url``   a new database cloned from a migrated template (fast, isolated), dropped after
``empty_database_url``  a new database with no schema at all (for migration tests)
``store``          a connected Store on ``database_url``, closed after the test
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from receiver.embedded.process import ServerError
from receiver.store import Store
from receiver.store.migrate import migrate
from tests.support.postgres import PostgresServer
from tests.support.servers import server_missing

__all__ = [
    "database_url",
    "empty_database_url",
    "pg_controlled",
    "pg_server",
    "pg_template",
    "store",
]


def _suffix() -> str:
    return os.urandom(6).hex()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.from_environment()
    # ServerError covers PostgresUnavailable and a failed initdb or start-up.
    except (ServerError, OSError, subprocess.SubprocessError) as exc:
        server_missing(f"PostgreSQL ({exc})")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_controlled(pg_server: PostgresServer) -> PostgresServer:
    """For tests that stop and start PostgreSQL: only a server this session started."""
    if not pg_server.managed:
        server_missing("a PostgreSQL server the tests may stop and start")
    return pg_server


async def _admin(pg_server: PostgresServer) -> asyncpg.Connection:
    if pg_server.managed and not pg_server.running:
        pg_server.start()  # an earlier test stopped it and failed before starting it again
    try:
        return await asyncpg.connect(pg_server.url("postgres"), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        server_missing(f"PostgreSQL ({exc})")


@pytest.fixture(scope="session")
async def pg_template(pg_server: PostgresServer) -> AsyncIterator[str]:
    """A database migrated once per session; each test's database is a copy of it."""
    name = f"remediator_tpl_{_suffix()}"
    admin = await _admin(pg_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(pg_server.url(name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield name
    admin = await _admin(pg_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _new_database(pg_server: PostgresServer, template: str | None) -> str:
    name = f"remediator_test_{_suffix()}"
    admin = await _admin(pg_server)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return name


async def _drop_database(pg_server: PostgresServer, name: str) -> None:
    admin = await _admin(pg_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(pg_server: PostgresServer, pg_template: str) -> AsyncIterator[str]:
    name = await _new_database(pg_server, pg_template)
    try:
        yield pg_server.url(name)
    finally:
        await _drop_database(pg_server, name)


@pytest.fixture
async def empty_database_url(pg_server: PostgresServer) -> AsyncIterator[str]:
    name = await _new_database(pg_server, None)
    try:
        yield pg_server.url(name)
    finally:
        await _drop_database(pg_server, name)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    created = await Store.connect(database_url, min_size=1, max_size=10)
    # A test's notifications arrive when it sends them: a verification ends at its deadline
    # unless the test gives a delivery grace (test_verification_grace.py).
    created.verify_grace_s = 0.0
    try:
        yield created
    finally:
        await created.close()
