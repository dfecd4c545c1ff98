"""The store's schema migrations against a real PostgreSQL server: each applied once, safe when
replicas migrate at once, and a changed migration refused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from receiver.store import Store
from receiver.store.migrate import Migration, MigrationError, load_migrations, migrate

pytestmark = pytest.mark.postgres


async def test_migrations_apply_once_and_are_idempotent(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        versions = [m.version for m in load_migrations()]
        assert await migrate(conn) == versions
        assert await migrate(conn) == []
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions
        assert rows[0]["name"] == "init"
    finally:
        await conn.close()


async def test_two_replicas_migrating_at_once_is_safe(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in load_migrations()]  # each exactly once
        stores = await asyncio.gather(
            Store.connect(empty_database_url, min_size=1, max_size=2),
            Store.connect(empty_database_url, min_size=1, max_size=2),
        )
        for store in stores:
            await store.ping()
            await store.close()
    finally:
        for c in conns:
            await c.close()


async def test_a_changed_migration_is_refused(database_url: str) -> None:
    first = load_migrations()[0]
    changed = Migration(first.version, first.name, first.sql + "\n-- edited\n")
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(MigrationError, match="changed"):
            await migrate(conn, [changed])
    finally:
        await conn.close()
