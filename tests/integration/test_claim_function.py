"""The worker's claim is one statement: ``claim_alert_events`` (migration 0018) runs
``CLAIM_EVENTS_SQL`` with ``CLAIM_PLAN_SETTINGS`` in force, and leaves nothing behind.

The tests of the claim's plan (test_claim_flat.py) and of its order (test_claim_fairness.py)
read ``CLAIM_EVENTS_SQL``; the function must run exactly that, or they would test a claim the
worker no longer sends. A change to the claim's SQL takes a new migration that replaces the
function: the first test here fails until it does.
"""

from __future__ import annotations

import re

import pytest

from receiver.store import NewEvent, Store
from receiver.store.claims import CLAIM_EVENTS_CALL, CLAIM_EVENTS_SQL, CLAIM_PLAN_SETTINGS, LANES
from receiver.store.events import CLAIM_WINDOW
from tests.support.events import new_event

pytestmark = pytest.mark.postgres


def _words(sql: str) -> list[str]:
    """``sql`` as its tokens: what differs only in layout is the same statement."""
    return sql.split()


async def test_the_function_runs_the_claims_sql_and_no_other(store: Store) -> None:
    source = await store._pool.fetchval(
        "SELECT prosrc FROM pg_proc WHERE proname = 'claim_alert_events'"
    )
    assert source is not None, "migration 0018 did not create claim_alert_events"
    match = re.fullmatch(
        r"\s*#variable_conflict use_column\s+BEGIN\s+RETURN QUERY(.*);\s*END\s*", source, re.S
    )
    assert match, source[:200]
    assert _words(match[1]) == _words(CLAIM_EVENTS_SQL), (
        "CLAIM_EVENTS_SQL changed: add a migration that replaces claim_alert_events with it"
    )


async def test_the_function_carries_the_claims_plan_settings(store: Store) -> None:
    config = await store._pool.fetchval(
        "SELECT proconfig FROM pg_proc WHERE proname = 'claim_alert_events'"
    )
    wanted = re.findall(r"SET LOCAL (\w+) = (\w+)", CLAIM_PLAN_SETTINGS)
    assert wanted, CLAIM_PLAN_SETTINGS
    assert sorted(config) == sorted(f"{name}={value}" for name, value in wanted)


async def test_a_claim_leaves_its_settings_behind_on_the_connection(store: Store) -> None:
    await store.insert_events([new_event(i) for i in range(3)])
    async with store._pool.acquire() as conn:
        rows = await conn.fetch(
            CLAIM_EVENTS_CALL, "worker-1", 2, 60.0, 2 * 2 + CLAIM_WINDOW // 4, "", LANES
        )
        assert len([r for r in rows if r["id"] is not None]) == 2
        # Reset when the function returned: the connection's next statements, another
        # caller's on a pooled connection, plan as they would have.
        assert await conn.fetchval("SHOW enable_bitmapscan") == "on"
        assert await conn.fetchval("SHOW enable_seqscan") == "on"
        # One statement in a transaction of its own: nothing is left open.
        assert not conn.is_in_transaction()
    claimed = await store._pool.fetchval(
        "SELECT count(*) FROM alert_events WHERE state = 'claimed' AND lease_owner = 'worker-1'"
    )
    assert claimed == 2


async def test_the_store_claims_through_the_function_as_the_sql_would(store: Store) -> None:
    # The same claim twice from the same queue, rolled back in between: once as the worker
    # sends it, once as the SQL the plan tests read, with its settings. Same events, same order.
    events: list[NewEvent] = [
        new_event(i, alertname=name) for i, name in enumerate(["A", "B", "A", "C", "B", "A"])
    ]
    await store.insert_events(events)
    args = ("worker-1", 4, 60.0, 4 * 2 + CLAIM_WINDOW // 4, "", LANES)
    picks = []
    for sql, settings in ((CLAIM_EVENTS_CALL, None), (CLAIM_EVENTS_SQL, CLAIM_PLAN_SETTINGS)):
        async with store._pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                if settings:
                    await conn.execute(settings)
                rows = await conn.fetch(sql, *args)
            finally:
                await tx.rollback()
        picks.append([(r["id"], r["rank"], r["ord"], r["walked"]) for r in rows])
    assert picks[0] == picks[1]
    assert len(picks[0]) == 4
