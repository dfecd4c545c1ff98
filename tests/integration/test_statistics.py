"""The planner's statistics follow a storm (receiver/store/statistics.py): a table that grew
from nothing is analysed at once, which ends the plans made on its old statistics; a big table
that changed a little is left to autovacuum.

The server counts changes per table in each backend and reports them at most once a second;
``_flushed`` makes the connection that made them report now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from receiver.model import Target
from receiver.store import Store
from receiver.store.statistics import MIN_CHANGES
from tests.support.events import alert_event
from tests.support.postgres import PostgresServer, login_role

pytestmark = pytest.mark.postgres

WEB = Target("Deployment", "shop", "web-0")


async def _flushed(conn: Any) -> None:
    """This backend's counts reported now (they are sent when it next goes idle)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT 1")


async def _changes(store: Store) -> dict[str, tuple[float, int]]:
    return {t.table: (t.rows, t.changed) for t in await store.table_changes()}


async def _copies_of_the_run(conn: Any, count: int) -> None:
    """``count`` more runs, copies of the one stored, each of an alert of its own."""
    await conn.execute(
        """INSERT INTO runs
           SELECT (jsonb_populate_record(NULL::runs, to_jsonb(r) || jsonb_build_object(
                       'id', gen_random_uuid(), 'fingerprint', r.fingerprint || '-' || g))).*
           FROM (SELECT * FROM runs LIMIT 1) AS r, generate_series(1, $1) AS g""",
        count,
    )


async def _step(conn: Any, run_id: str, idx: int) -> None:
    """A step row of ``run_id``: the insert checks the run exists (the foreign key)."""
    await conn.execute(
        "INSERT INTO steps (run_id, phase, idx, action) VALUES ($1::uuid, 'run', $2, 'probe')",
        run_id,
        idx,
    )


async def _sequential_scans_of_runs(store: Store) -> int:
    async with store._pool.acquire() as reader:
        return int(
            await reader.fetchval("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'runs'")
        )


async def _events(conn: Any, count: int) -> None:
    await conn.execute(
        """INSERT INTO alert_events (fingerprint, starts_at, status, labels, alertname,
                                     group_key, receiver)
           SELECT lpad(to_hex(g), 16, '0'), '2026-01-01T00:00:00Z', 'firing', '{}', 'A', 'k', 'r'
           FROM generate_series(1, $1) AS g""",
        count,
    )
    await _flushed(conn)


async def test_a_table_grown_from_nothing_is_analysed_and_then_left_alone(store: Store) -> None:
    await store._pool.execute("VACUUM (ANALYZE) alert_events")
    async with store._pool.acquire() as conn:
        await _events(conn, 2 * MIN_CHANGES)
    assert (await _changes(store))["alert_events"] == (0.0, 2 * MIN_CHANGES)

    assert "alert_events" in await store.refresh_statistics()
    rows, changed = (await _changes(store))["alert_events"]
    assert rows == 2 * MIN_CHANGES
    assert changed == 0
    assert "alert_events" not in await store.refresh_statistics()


async def test_a_big_table_that_changed_by_less_than_its_size_is_left_to_autovacuum(
    store: Store,
) -> None:
    async with store._pool.acquire() as conn:
        await _events(conn, 3 * MIN_CHANGES // 2)
        await conn.execute("ANALYZE alert_events")
        await conn.execute(
            "UPDATE alert_events SET not_before = not_before WHERE id IN "
            "(SELECT id FROM alert_events ORDER BY id LIMIT $1)",
            MIN_CHANGES + 10,
        )
        await _flushed(conn)
    rows, changed = (await _changes(store))["alert_events"]
    assert changed == MIN_CHANGES + 10 < rows
    assert "alert_events" not in await store.refresh_statistics()


async def test_after_the_analysis_a_step_no_longer_scans_every_run_to_check_its_own(
    store: Store,
) -> None:
    # The storm this is for: runs analysed while empty; the first steps written cache the
    # foreign-key check's plan, a scan of the table's one page; the storm then stores thousands
    # of runs, and each step written scanned them all, until autovacuum analysed the table a
    # minute later.
    await store._pool.execute("VACUUM (ANALYZE) runs")
    run_id = await store.create_run(rule="restart", event=alert_event(), target=WEB, dry_run=True)
    assert run_id is not None
    async with store._pool.acquire() as conn:
        for idx in range(10, 20):  # more than five: the server then keeps one plan
            await _step(conn, run_id, idx)
        await _copies_of_the_run(conn, 3 * MIN_CHANGES)
        await _flushed(conn)
        before = await _sequential_scans_of_runs(store)
        for idx in range(20, 25):
            await _step(conn, run_id, idx)
        await _flushed(conn)
        scanning = await _sequential_scans_of_runs(store)
        # The premise: without fresh statistics, every step scans runs.
        assert scanning - before >= 5

        assert "runs" in await store.refresh_statistics()
        for idx in range(25, 30):
            await _step(conn, run_id, idx)
        await _flushed(conn)
        assert await _sequential_scans_of_runs(store) == scanning


def _as(url: str, *, user: str | None = None, query: str = "") -> str:
    """``url`` with another role (no password: the test server trusts local connections) or a
    query string."""
    parts = urlsplit(url)
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@pytest.fixture
async def other_role(pg_server: PostgresServer) -> AsyncIterator[str]:
    """A login role that owns neither the store's tables nor its database."""
    async with login_role(pg_server.url("postgres"), "stats_") as role:
        yield role


async def test_a_role_that_may_not_analyse_the_tables_does_not_try_again_and_again(
    store: Store, database_url: str, other_role: str
) -> None:
    # The server skips the analysis with a WARNING in its log and leaves the counts as they
    # were: were the table taken for analysed, it would be tried (and logged as analysed)
    # every two seconds for as long as the service runs.
    async with store._pool.acquire() as conn:
        await _events(conn, 2 * MIN_CHANGES)
    other = await Store.connect(
        _as(database_url, user=other_role), min_size=1, max_size=1, run_migrations=False
    )
    try:
        assert "alert_events" not in {t.table for t in await other.table_changes()}
        assert await other.refresh_statistics() == []
    finally:
        await other.close()
    # Still stale, for the owner to analyse.
    assert "alert_events" in await store.refresh_statistics()


async def test_a_store_in_a_schema_whose_name_needs_quoting_is_watched(
    empty_database_url: str,
) -> None:
    admin = await asyncpg.connect(empty_database_url)
    try:
        await admin.execute('CREATE SCHEMA "Alert-Store"')
    finally:
        await admin.close()
    in_schema = await Store.connect(
        _as(empty_database_url, query="search_path=%22Alert-Store%22"), min_size=1, max_size=2
    )
    try:
        assert await in_schema._pool.fetchval("SELECT current_schema()") == "Alert-Store"
        async with in_schema._pool.acquire() as conn:
            await _events(conn, 2 * MIN_CHANGES)
        assert (await _changes(in_schema))["alert_events"][1] == 2 * MIN_CHANGES
        assert "alert_events" in await in_schema.refresh_statistics()
        assert (await _changes(in_schema))["alert_events"] == (2.0 * MIN_CHANGES, 0)
    finally:
        await in_schema.close()
