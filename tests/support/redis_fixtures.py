"""Redis fixtures: one real server per session, an empty database for every test.

``redis_controlled`` is the same server for tests that stop, start or freeze it: only one this
session started (``server_missing`` otherwise, before the test begins)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from tests.support.redis import ENV_URL, RedisServer
from tests.support.servers import server_missing


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.for_tests()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_controlled(redis_server: RedisServer) -> RedisServer:
    if not redis_server.managed:
        server_missing(
            f"a Redis the tests may stop and start ({ENV_URL} points at an external one)"
        )
    return redis_server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The server URL, its database flushed; the server restarted if a test left it stopped."""
    redis_server.ensure_running()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def acl_user(
    admin: redis.asyncio.Redis,
    url: str,
    name: str,
    keys: list[str],
    commands: tuple[str, ...] = ("+@all",),
) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the Redis at ``url`` logged in as a new user ``name`` (created through
    ``admin``, deleted after) who may run ``commands`` (ACL rules; every command by default)
    on the key patterns ``keys`` only: the server answers NOPERM for any other key or command."""
    password = f"{name}-password"
    await admin.acl_setuser(
        name,
        enabled=True,
        reset=True,
        passwords=[f"+{password}"],
        keys=keys,
        commands=list(commands),
    )
    client = redis.asyncio.Redis.from_url(url, username=name, password=password)
    try:
        yield client
    finally:
        await client.aclose()
        await admin.acl_deluser(name)
