"""A real PostgreSQL with the roles and sessions the tests of postgres.terminate_idle and
postgres.cancel_long_queries need.

``roles`` creates, once a module, the README's least-privilege role (member of
pg_signal_backend and pg_read_all_stats, not superuser) and the roles sessions are opened as:
allow-listed, other, replication, superuser, one with pg_signal_backend only, one with
pg_read_all_stats only and a group role. ``cluster`` opens real sessions with asyncpg in the
states each test needs (idle in transaction, idle, active), in the target database or in
another one, and closes them at the end; ``connection`` is the actions' connection as the
least-privilege role, ``context`` an action context over it, ``previewed_pids`` the sessions
an action's preview lists."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from remediations.base import ActionContext, Clients
from remediations.postgres.connection import PostgresConnection
from remediations.targets import Target
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer
from tests.support.sessions import Sessions

TARGET = Target("PostgresDatabase", "", "orders")


def as_role(url: str, role: str, database: str | None = None) -> str:
    """``url`` logged in as ``role`` (no password), in ``database`` when given."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    path = f"/{database}" if database else parts.path
    return urlunsplit((parts.scheme, f"{role}@{host}", path, "", ""))


@dataclass
class Roles:
    remediator: str
    app: str
    other: str
    repl: str
    superuser: str
    weak: str  # pg_signal_backend only: cannot see other roles' state
    mute: str  # pg_read_all_stats only: sees other roles' sessions, cannot signal them
    group: str  # NOLOGIN, the allow-listed role a member of it: it has no session of its own


@pytest.fixture(scope="module")
async def roles(pg_server: PostgresServer) -> AsyncIterator[Roles]:
    suffix = os.urandom(3).hex()
    kinds = ("remediator", "app", "other", "repl", "su", "weak", "mute", "group")
    names = Roles(*(f"{n}_{suffix}" for n in kinds))
    admin = await asyncpg.connect(pg_server.url("postgres"))
    try:
        # The README's role, verbatim in spirit: no superuser, two predefined roles.
        await admin.execute(f"CREATE ROLE {names.remediator} LOGIN NOSUPERUSER")
        await admin.execute(f"GRANT pg_signal_backend, pg_read_all_stats TO {names.remediator}")
        await admin.execute(f"CREATE ROLE {names.app} LOGIN")
        await admin.execute(f"CREATE ROLE {names.other} LOGIN")
        await admin.execute(f"CREATE ROLE {names.repl} LOGIN REPLICATION")
        await admin.execute(f"CREATE ROLE {names.superuser} LOGIN SUPERUSER")
        await admin.execute(f"CREATE ROLE {names.weak} LOGIN")
        await admin.execute(f"GRANT pg_signal_backend TO {names.weak}")
        await admin.execute(f"CREATE ROLE {names.mute} LOGIN")
        await admin.execute(f"GRANT pg_read_all_stats TO {names.mute}")
        await admin.execute(f"CREATE ROLE {names.group} NOLOGIN")
        await admin.execute(f"GRANT {names.group} TO {names.app}")
        yield names
    finally:
        for role in vars(names).values():
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


@dataclass
class Cluster:
    """Opens sessions in given states and closes them all at the end."""

    url: str  # the target database, as the superuser
    other_db_url: str
    roles: Roles
    sessions: Sessions = field(default_factory=Sessions)

    def _url(self, role: str, other_db: bool) -> str:
        return as_role(self.other_db_url if other_db else self.url, role)

    async def connect(self, role: str, *, other_db: bool = False, app: str = "") -> Any:
        return await self.sessions.connect(self._url(role, other_db), app)

    async def idle_in_transaction(self, role: str, *, other_db: bool = False, app: str = "") -> Any:
        return await self.sessions.idle(
            self._url(role, other_db), transaction=True, application=app
        )

    async def idle(self, role: str) -> Any:
        return await self.sessions.idle(self._url(role, False), transaction=False)

    async def active(self, conn: Any, seconds: float = 60) -> asyncio.Task[Any]:
        """Start a long statement on ``conn`` and wait until the server shows it active."""
        pid = conn.get_server_pid()
        task = self.sessions.sleep(conn, seconds)
        await eventually(lambda: self.state(pid), lambda s: s == "active")
        return task

    async def state(self, pid: int) -> str | None:
        admin = await asyncpg.connect(self.url.replace(f"/{self.database}", "/postgres"))
        try:
            row = await admin.fetchrow("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
        finally:
            await admin.close()
        return None if row is None else str(row["state"])

    async def alive(self, pid: int) -> bool:
        return await self.state(pid) is not None

    @property
    def database(self) -> str:
        return urlsplit(self.url).path.lstrip("/")


@pytest.fixture
async def cluster(
    pg_server: PostgresServer, empty_database_url: str, roles: Roles
) -> AsyncIterator[Cluster]:
    other = f"other_{os.urandom(4).hex()}"
    admin = await asyncpg.connect(pg_server.url("postgres"))
    await admin.execute(f'CREATE DATABASE "{other}"')
    created = Cluster(empty_database_url, pg_server.url(other), roles)
    try:
        yield created
    finally:
        await created.sessions.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def connection(cluster: Cluster) -> AsyncIterator[PostgresConnection]:
    conn = PostgresConnection("orders", as_role(cluster.url, cluster.roles.remediator))
    try:
        yield conn
    finally:
        await conn.close()


def context(connection: PostgresConnection, *, dry_run: bool = False) -> ActionContext:
    """An action context whose client ``postgres:orders`` is ``connection``."""
    return ActionContext("run-1", dry_run, Clients({"postgres:orders": connection}))


async def previewed_pids(action: Any, ctx: ActionContext, params: Any) -> list[int]:
    """The pids of the sessions ``action``'s preview lists, sorted."""
    change = await action.preview(ctx, TARGET, params)
    return sorted(s["pid"] for s in change.before["sessions"])
