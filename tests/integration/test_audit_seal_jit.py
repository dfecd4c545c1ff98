"""The audit seal and the functions that pin their plans compile nothing with JIT (migrations
0029 and 0031).

Migration 0015 runs the seal with ``enable_seqscan = off``, and before PostgreSQL 18 that costs
the one-row scan of ``audit_head`` at 10^10, far over ``jit_above_cost``: on a server with JIT
(Debian's packages have it) every commit that sealed a row compiled the seal's statements with
LLVM, about 9 ms of CPU per storm event. ``audit_seal_from`` now runs with ``jit = off``. On
Debian's PostgreSQL, with pg_stat_statements counting the statements run inside functions and
triggers, sealed commits show no JIT-compiled function. The claim and the history reads run
with sequential and bitmap scans off and a generic plan, as the seal does: with
``jit_above_cost`` at 0 (every plan over it), their statements compile nothing either."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from receiver.model import Target
from receiver.store import Store
from receiver.store.audit import append_in_tx
from receiver.store.claims import CLAIM_EVENTS_CALL, LANES
from receiver.store.events import CLAIM_WINDOW
from receiver.store.history_sql import HISTORY_CALL, batch_arguments, history_arguments
from tests.support.debian_postgres import debian_server, migrated_database
from tests.support.events import alert_event, new_event
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def counting_server() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL with pg_stat_statements loaded (set, then a restart)."""
    with debian_server() as server:

        async def preload() -> None:
            conn = await asyncpg.connect(server.url())
            try:
                await conn.execute(
                    "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
                )
            finally:
                await conn.close()

        asyncio.run(preload())
        server.stop()
        server.start()
        yield server


async def test_sealed_commits_compile_nothing_with_jit(counting_server: PostgresServer) -> None:
    conn = await asyncpg.connect(await migrated_database(counting_server, "jit"))
    try:
        assert await conn.fetchval("SELECT pg_jit_available()"), "this server has no JIT"
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        # The seal's statements run inside a trigger and a function: count nested ones too.
        await conn.execute("SET pg_stat_statements.track = 'all'")
        await conn.execute("SELECT pg_stat_statements_reset()")
        for n in range(5):
            async with conn.transaction():
                for kind in ("run.created", "run.refused", "run.announced"):
                    await append_in_tx(conn, kind, None, f"fp-{n}", {"n": n})
        sealed = await conn.fetchval("SELECT count(*) FROM audit_log")
        compiled = await conn.fetch(
            """SELECT query, jit_functions FROM pg_stat_statements
               WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND jit_functions > 0"""
        )
    finally:
        await conn.close()
    assert sealed == 15
    assert [dict(r) for r in compiled] == []


async def test_the_claim_and_the_history_reads_compile_nothing_with_jit(
    counting_server: PostgresServer,
) -> None:
    url = await migrated_database(counting_server, "jit")
    store = await Store.connect(url, min_size=1, max_size=2)
    try:
        await store.insert_events([new_event(i) for i in range(3)])
    finally:
        await store.close()
    read = history_arguments(
        alert_event(1),
        600.0,
        [("restart", Target(kind="Deployment", namespace="demo", name="api"))],
        [("restart", Target(kind="Deployment", namespace="demo", name="api"))],
        5,
    )
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SET pg_stat_statements.track = 'all'")
        # Every plan over the threshold: only a function's own `jit = off` keeps it from LLVM.
        await conn.execute("SET jit_above_cost = 0")
        await conn.execute("SELECT pg_stat_statements_reset()")
        claimed = await conn.fetch(
            CLAIM_EVENTS_CALL, "worker-1", 2, 60.0, 2 * 2 + CLAIM_WINDOW // 4, "", LANES
        )
        rows = await conn.fetch(HISTORY_CALL, *batch_arguments([read, read]))
        nested = await conn.fetchval(
            """SELECT count(*) FROM pg_stat_statements
               WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND NOT toplevel"""
        )
        compiled = await conn.fetch(
            """SELECT query, jit_functions FROM pg_stat_statements
               WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND NOT toplevel AND jit_functions > 0"""
        )
    finally:
        await conn.close()
    assert len([r for r in claimed if r["id"] is not None]) == 2
    assert {r["tag"] for r in rows} == {0, 1}
    assert nested >= 2  # the claim's statement and the reads' were counted
    assert [dict(r) for r in compiled] == []
