"""A claim reads about as many queued rows with a storm's backlog queued as with a few.

Each claim locks its picks by primary key. Joined to the candidates without it, on statistics
that still called the queue small (right after a burst, before autovacuum analyses it), the
planner walked every queued row and filtered each against the candidates: the claim grew with
the backlog. These tests count the rows the claim takes from ``alert_events`` in the plan
PostgreSQL ran (EXPLAIN ANALYZE of the very statement, in the transaction the store uses).
"""

from __future__ import annotations

import json

import asyncpg

from receiver.store import NewEvent, Store
from receiver.store.claims import CLAIM_EVENTS_SQL, CLAIM_PLAN_SETTINGS, LANES
from receiver.store.events import CLAIM_WINDOW
from receiver.store.migrate import load_migrations, migrate
from tests.support.events import new_event
from tests.support.plans import execute_sql, explain_analyze, rows_read


async def _analyse_after_done_events(store: Store) -> None:
    """Statistics taken before a storm: 20,000 events stored, all done, then ANALYZE."""
    await store._pool.execute(
        """INSERT INTO alert_events (fingerprint, starts_at, status, labels, alertname,
                                     group_key, receiver, state, done_at)
           SELECT lpad(to_hex(g), 16, '0'), '2026-01-01T00:00:00Z', 'firing', '{}', 'Old',
                  'k', 'r', 'done', now()
           FROM generate_series(1, 20000) AS g"""
    )
    await store._pool.execute("ANALYZE alert_events")


async def _insert(store: Store, events: list[NewEvent]) -> None:
    for start in range(0, len(events), 500):
        await store.insert_events(events[start : start + 500])


async def _rows_read_by_a_claim(store: Store, backlog: int) -> int:
    events = [new_event(i) for i in range(backlog)]
    await _insert(store, events)
    async with store._pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            # As EventQueue.claim_events runs it (rolled back: EXPLAIN ANALYZE runs the
            # claim's UPDATE).
            await conn.execute(CLAIM_PLAN_SETTINGS)
            plan = await explain_analyze(
                conn, CLAIM_EVENTS_SQL, "worker-1", 2, 60.0, 2 * 2 + CLAIM_WINDOW // 4, "", LANES
            )
        finally:
            await tx.rollback()
    claimed = plan["Actual Rows"]
    assert claimed == 2, json.dumps(plan, indent=1)
    return rows_read(plan, "alert_events")


async def test_a_claim_reads_the_same_rows_behind_a_backlog_of_3000_as_of_30(
    store: Store,
) -> None:
    few = await _rows_read_by_a_claim(store, 30)
    await store._pool.execute("DELETE FROM alert_events")
    many = await _rows_read_by_a_claim(store, 3000)
    # The walk reads its window of heads and their alerts' queues; never the backlog.
    assert many <= few + 10, (few, many)
    assert many < 100, many


async def test_a_claim_planned_on_an_empty_queue_reads_no_more_behind_a_backlog(
    store: Store,
) -> None:
    # The service's claim is planned once, early, and the plan kept (a generic plan): on the
    # statistics of a queue that was empty then, whatever a storm has queued since.
    args = ["worker-1", 2, 60.0, 2 * 2 + CLAIM_WINDOW // 4, "", LANES]
    async with store._pool.acquire() as conn:
        execute = await execute_sql(conn, "cached_claim", args)
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE cached_claim AS {CLAIM_EVENTS_SQL}")
        try:
            async with conn.transaction():
                await conn.execute(CLAIM_PLAN_SETTINGS)
                await conn.execute(execute)
            await _insert(store, [new_event(i) for i in range(3000)])
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(CLAIM_PLAN_SETTINGS)
                plan = await explain_analyze(conn, execute)
            finally:
                await tx.rollback()
        finally:
            await conn.execute("DEALLOCATE cached_claim")
            await conn.execute("RESET plan_cache_mode")
    assert plan["Actual Rows"] == 2, json.dumps(plan, indent=1)
    assert rows_read(plan, "alert_events") < 100, json.dumps(plan, indent=1)


async def test_a_claim_after_statistics_that_saw_only_done_events_reads_no_more(
    store: Store,
) -> None:
    # ANALYZE before a storm: 20,000 events, all done. Then the storm queues 3,000.
    await _analyse_after_done_events(store)
    assert await _rows_read_by_a_claim(store, 3000) < 100


async def _rows_read_behind_expired_leases(store: Store, backlog: int) -> int:
    """Rows a claim reads when ``backlog`` events were claimed by workers that died (their
    leases ran out), 50 alert names."""
    events = [new_event(i, alertname=f"Storm{i % 50}") for i in range(backlog)]
    await _insert(store, events)
    await store._pool.execute(
        """UPDATE alert_events SET state = 'claimed', lease_owner = 'dead-worker', attempts = 1,
                                  lease_until = now() - interval '1 minute'
           WHERE state = 'pending'"""
    )
    return await _rows_read_by_a_claim(store, 0)


async def test_a_claim_reads_the_same_rows_behind_3000_expired_leases_as_behind_30(
    store: Store,
) -> None:
    # A replica died holding a storm's claims; its leases ran out before any ANALYZE. Without
    # the pinned plan PostgreSQL bitmap-scanned every expired lease and sorted them: 6,016 rows
    # read for a claim of 2.
    few = await _rows_read_behind_expired_leases(store, 30)
    await store._pool.execute("DELETE FROM alert_events")
    many = await _rows_read_behind_expired_leases(store, 3000)
    assert many <= few + 10, (few, many)
    assert many < 100, many


async def test_a_claim_behind_expired_leases_after_statistics_of_done_events_reads_no_more(
    store: Store,
) -> None:
    # ANALYZE before the storm saw 20,000 events, all done (no lease at all); then 3,000 are
    # claimed and their worker dies. Unpinned: 3,028 rows read for a claim of 2.
    await _analyse_after_done_events(store)
    assert await _rows_read_behind_expired_leases(store, 3000) < 100


async def _rows_read_behind_one_flapping_alert(store: Store, episodes: int) -> int:
    """Rows a claim reads when one alert has ``episodes`` events queued (it flapped while no
    worker ran), each waiting behind the one before it, and another alert has one."""
    flapping = [
        new_event(
            "f" * 16, starts_at=f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        )
        for i in range(episodes)
    ]
    await _insert(store, flapping)
    await store.insert_events([new_event("0" * 16, alertname="Other")])
    return await _rows_read_by_a_claim(store, 0)


async def test_a_claim_behind_one_flapping_alert_reads_each_queued_event_once(
    store: Store,
) -> None:
    # Only the head of an alert's queue may be claimed. The head was found by reading and
    # sorting every queued event of the alert, once for each of them the claim walked past:
    # 9,003,005 rows read (2 s) for a claim of 2 behind 3,000 queued episodes of one alert.
    few = await _rows_read_behind_one_flapping_alert(store, 30)
    await store._pool.execute("DELETE FROM alert_events")
    many = await _rows_read_behind_one_flapping_alert(store, 3000)
    assert many < 5 * 3000, (few, many)
    # The head of the flapping alert's queue is its oldest event.
    [first] = await store._pool.fetch(
        "SELECT min(id) AS id FROM alert_events WHERE fingerprint = $1", "f" * 16
    )
    claimed = await store.claim_events("worker-1", 2, 60.0)
    assert first["id"] in {c.event.id for c in claimed}


async def test_an_upgrade_drops_the_state_statistics_an_analyze_took_before(
    empty_database_url: str,
) -> None:
    migrations = load_migrations()
    before = [m for m in migrations if m.version < 16]
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, before)
        await conn.execute(
            """INSERT INTO alert_events (fingerprint, starts_at, status, labels, alertname,
                                         group_key, receiver, state, done_at)
               SELECT lpad(to_hex(g), 16, '0'), '2026-01-01T00:00:00Z', 'firing', '{}',
                      'Old', 'k', 'r', 'done', now()
               FROM generate_series(1, 1000) AS g"""
        )
        await conn.execute("ANALYZE alert_events")
        measured = "SELECT count(*) FROM pg_stats WHERE tablename = $1 AND attname = 'state'"
        assert await conn.fetchval(measured, "alert_events") == 1
        assert await migrate(conn) == [m.version for m in migrations if m.version >= 16]
        assert await conn.fetchval(measured, "alert_events") == 0
        await conn.execute("ANALYZE alert_events")
        assert await conn.fetchval(measured, "alert_events") == 0
        # The data and the indexes over state are whole.
        assert await conn.fetchval("SELECT count(*) FROM alert_events WHERE state = 'done'") == 1000
    finally:
        await conn.close()
