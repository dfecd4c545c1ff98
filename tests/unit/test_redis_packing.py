"""The guards' Redis connections pack commands with hiredis, byte for byte as redis-py does.

Pure: nothing here connects (a pool makes a connection object without connecting it). The
guards' scripts on real servers are in tests/integration (test_guards*.py)."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.exceptions import DataError

from receiver.config import load_settings
from receiver.redis_connect import GuardRedis, connect_redis

# An admission as admit.lua is called: EVALSHA, the keys, then run id, guard count and each
# guard's name, counts and arguments (receiver.guards.policy.admit_call).
ADMISSION: tuple[Any, ...] = (
    "EVALSHA",
    "0123456789abcdef0123456789abcdef01234567",
    3,
    "remediator:pause",
    "remediator:rate:restart-on-high-memory",
    "remediator:lock:Deployment/shop/web-ü",
    "6f1d3c2a-8b7e-5c4d-9a1f-2e3b4c5d6e7f",
    2,
    "rate",
    1,
    2,
    3,
    3_600_000,
    "lock",
    1,
    2,
    "6f1d3c2a:1764739200000:ab",
    -1,
    b"raw \x00 bytes",
)
# redis-py's Python packer cuts a command around a long argument (6,000 bytes and more);
# hiredis packs it whole: told apart by the chunks.
LONG = ("SET", "k", "v" * 10_000)


def redis_pys(*args: Any) -> bytes:
    """What redis-py's own asyncio connection sends for ``args``."""
    return b"".join(Connection().pack_command(*args))


def one_connection(built: GuardRedis) -> Any:
    pool = built.client.connection_pool  # type: ignore[union-attr]
    return pool.make_connection()


@pytest.fixture
async def standalone() -> Any:
    built = connect_redis(load_settings(None, {}), "redis://127.0.0.1:1/0")
    yield built
    await built.close()


async def test_an_admission_is_one_chunk_with_redis_pys_bytes(standalone: GuardRedis) -> None:
    conn = one_connection(standalone)
    assert conn.pack_command(*ADMISSION) == [redis_pys(*ADMISSION)]
    # A command name of two words is two arguments, as redis-py sends it.
    assert conn.pack_command("SCRIPT EXISTS", "abc") == [redis_pys("SCRIPT EXISTS", "abc")]
    assert conn.pack_command(b"SCRIPT EXISTS", "abc") == [redis_pys(b"SCRIPT EXISTS", "abc")]
    assert conn.pack_command(*LONG) == [redis_pys(*LONG)]


async def test_a_pipeline_is_one_buffer_with_redis_pys_bytes(standalone: GuardRedis) -> None:
    conn = one_connection(standalone)
    # The guards' pipeline of admissions (receiver.guards.scripts.Script.many), a long argument
    # and an argument hiredis does not pack among them.
    commands = [ADMISSION, ADMISSION, LONG, ("SET", "k", 1.5), ("SCRIPT EXISTS", "abc")]
    expected = b"".join(Connection().pack_commands(commands))
    assert conn.pack_commands(commands) == [expected]


class Level(IntEnum):
    HIGH = 2


class Name(StrEnum):
    RATE = "rate"


async def test_other_arguments_are_packed_or_refused_as_redis_py_does(
    standalone: GuardRedis,
) -> None:
    conn = one_connection(standalone)
    # hiredis would write the IntEnum as its number; redis-py writes its repr.
    for args in (("SET", "k", 1.5), ("SET", "k", Level.HIGH), ("SET", Name.RATE, "v")):
        assert b"".join(conn.pack_command(*args)) == redis_pys(*args)
    with pytest.raises(DataError):
        conn.pack_command("SET", "k", True)
    with pytest.raises(DataError):
        conn.pack_command("SET", "k", None)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:1/0", Connection),
        ("rediss://127.0.0.1:1/0", SSLConnection),
        ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
    ],
)
async def test_every_way_to_one_server_keeps_its_connection_and_packs_with_hiredis(
    url: str, kind: type[Any]
) -> None:
    built = connect_redis(load_settings(None, {}), url)
    try:
        conn = one_connection(built)
        assert isinstance(conn, kind)
        assert conn.pack_command(*ADMISSION) == [redis_pys(*ADMISSION)]
        assert conn.pack_command(*LONG) == [redis_pys(*LONG)]
    finally:
        await built.close()


async def test_a_sentinels_master_packs_with_hiredis() -> None:
    settings = load_settings(
        None,
        {
            "REMEDIATOR_REDIS_MODE": "sentinel",
            "REMEDIATOR_REDIS_SENTINELS": "127.0.0.1:1",
            "REMEDIATOR_REDIS_SENTINEL_MASTER": "guards",
        },
    )
    built = connect_redis(settings, None)
    try:
        conn = one_connection(built)
        assert isinstance(conn, SentinelManagedConnection)
        assert conn.pack_command(*LONG) == [redis_pys(*LONG)]
    finally:
        await built.close()
