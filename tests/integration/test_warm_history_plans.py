"""serve's store makes the history read's plan on each connection its pool opens, before an
alert needs it (receiver.startup.connect_store, Store.connect(warm=True)): a connection's
first read compiles engine_histories and makes its plan, 20 to 40 ms that the service's
first alerts after a start otherwise paid (the storm round, stop 38).

What is asserted is the mechanism, not a time: each backend the pool opened ran the history
read (pg_stat_activity keeps an idle backend's last statement), a connection added beyond
the pool's floor as well, before it was used."""

from __future__ import annotations

import contextlib
from typing import Any

import asyncpg

from receiver.config import Settings
from receiver.config.settings import DatabasePooler
from receiver.startup import connect_store
from receiver.store import Store
from receiver.store.history import HISTORY_CALL

QUERY = """SELECT query FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND backend_type = 'client backend'"""


async def _last_statements(store: Store, database_url: str, held: int) -> list[str]:
    """Each pool backend's last statement, with ``held`` connections of the pool held (the
    pool opens those beyond its floor)."""
    pool: Any = store._pool
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(held):
            await stack.enter_async_context(pool.acquire())
        conn = await asyncpg.connect(database_url)
        try:
            return [str(r["query"]) for r in await conn.fetch(QUERY)]
        finally:
            await conn.close()


async def test_each_connection_the_pool_opens_reads_the_history_first(
    database_url: str,
) -> None:
    store = await connect_store(Settings(), database_url)
    try:
        floor = store._pool.get_min_size()
        statements = await _last_statements(store, database_url, floor + 1)
    finally:
        await store.close()
    assert len(statements) == floor + 1, statements
    # One of the floor migrated the store after it was opened: its last statement is that.
    assert statements.count(HISTORY_CALL) >= floor, statements


async def test_behind_a_transaction_pooler_it_does_not(database_url: str) -> None:
    settings = Settings(database_pooler=DatabasePooler.PGBOUNCER_TRANSACTION)
    assert settings.transaction_pooled
    store = await connect_store(settings, database_url)
    try:
        statements = await _last_statements(store, database_url, store._pool.get_min_size() + 1)
    finally:
        await store.close()
    assert statements
    assert HISTORY_CALL not in statements, statements


async def test_a_fresh_store_starts_without_a_failed_statement(empty_database_url: str) -> None:
    # Before the first migration there is no history function to warm: looked up, not called
    # and its error ignored, since the server logs every failed statement as an ERROR.
    store = await connect_store(Settings(), empty_database_url)
    try:
        await _last_statements(store, empty_database_url, store._pool.get_min_size() + 1)
    finally:
        await store.close()
    conn = await asyncpg.connect(empty_database_url)
    try:
        # Each backend's counts reach the view when it ends: every one of the pool's has.
        failed = await conn.fetchval(
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert failed == 0
