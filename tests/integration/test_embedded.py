"""Embedded PostgreSQL and Redis: they start under data_dir, stop cleanly and keep their data."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio

from receiver.embedded import EmbeddedError, EmbeddedServices, postgres_bin_dir
from tests.support.servers import server_missing

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    try:
        postgres_bin_dir()
    except EmbeddedError as exc:
        server_missing(f"embedded PostgreSQL ({exc})")
    return tmp_path / "data"


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=0.5):
            return True
    except OSError:
        return False


async def test_start_stop_and_data_survives_a_restart(data_dir: Path) -> None:
    async with EmbeddedServices(data_dir) as first:
        assert first.database_url is not None
        assert first.redis_url is not None
        db_url, redis_url = first.database_url, first.redis_url
        assert urlsplit(db_url).hostname == "127.0.0.1"
        assert urlsplit(redis_url).hostname == "127.0.0.1"
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("CREATE TABLE kept (v text)")
            await conn.execute("INSERT INTO kept VALUES ('still here')")
        finally:
            await conn.close()
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await client.set("cooldown:rule", "1")
        finally:
            await client.aclose()
    assert first.database_url is None
    assert not _port_open(db_url)
    assert not _port_open(redis_url)
    assert (data_dir / "postgres" / "data" / "PG_VERSION").is_file()

    async with EmbeddedServices(data_dir) as second:
        assert second.database_url is not None
        assert second.redis_url is not None
        conn = await asyncpg.connect(second.database_url)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "still here"
        finally:
            await conn.close()
        client = redis.asyncio.Redis.from_url(second.redis_url)
        try:
            assert await client.get("cooldown:rule") == b"1"
        finally:
            await client.aclose()


def test_only_what_is_asked_for(data_dir: Path) -> None:
    with EmbeddedServices(data_dir, postgres=False) as services:
        assert services.database_url is None
        assert services.redis_url is not None
    assert not (data_dir / "postgres").exists()


async def test_a_leftover_server_is_replaced(data_dir: Path) -> None:
    """A postmaster orphaned by a killed service does not block the next start."""
    orphaned = EmbeddedServices(data_dir, redis=False)
    await asyncio.to_thread(orphaned.start)
    assert orphaned.database_url is not None
    try:
        with EmbeddedServices(data_dir, redis=False) as services:
            assert services.database_url is not None
            conn = await asyncpg.connect(services.database_url)
            try:
                assert await conn.fetchval("SELECT 1") == 1
            finally:
                await conn.close()
    finally:
        orphaned.stop()


async def test_a_leftover_redis_is_replaced_and_its_data_kept(data_dir: Path) -> None:
    """A redis-server orphaned by a killed service is stopped; its append-only file is read."""
    orphaned = EmbeddedServices(data_dir, postgres=False)
    await asyncio.to_thread(orphaned.start)
    assert orphaned.redis_url is not None
    client = redis.asyncio.Redis.from_url(orphaned.redis_url)
    try:
        await client.set("budget:rule", "3")
    finally:
        await client.aclose()
    try:
        with EmbeddedServices(data_dir, postgres=False) as services:
            assert services.redis_url is not None
            assert not _port_open(orphaned.redis_url)
            client = redis.asyncio.Redis.from_url(services.redis_url)
            try:
                assert await client.get("budget:rule") == b"3"
            finally:
                await client.aclose()
    finally:
        orphaned.stop()
