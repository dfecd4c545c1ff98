"""The statements whose plans are pinned run as functions that carry the settings: the claim
(``claim_alert_events``, migration 0018) and the engine's history read (``engine_histories``,
migration 0030). Each runs its SQL with its settings in force, and leaves nothing behind.

The tests of their plans (test_claim_flat.py, test_history_flat.py) and of the claim's order
(test_claim_fairness.py) read the SQL text; each function must run exactly that, or they would
test a statement the worker no longer sends. A change to the SQL takes a new migration that
replaces the function: the first test here fails until it does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from receiver.model import Target
from receiver.store import NewEvent, Store
from receiver.store.claims import CLAIM_EVENTS_CALL, CLAIM_EVENTS_SQL, CLAIM_PLAN_SETTINGS, LANES
from receiver.store.events import CLAIM_WINDOW
from receiver.store.history import (
    HISTORY_CALL,
    HISTORY_PLAN_SETTINGS,
    HISTORY_SQL,
    batch_arguments,
    history_arguments,
)
from tests.support.events import alert_event, new_event

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Pinned:
    function: str
    sql: str
    settings: str


PINNED = [
    Pinned("claim_alert_events", CLAIM_EVENTS_SQL, CLAIM_PLAN_SETTINGS),
    Pinned("engine_histories", HISTORY_SQL, HISTORY_PLAN_SETTINGS),
]


# Of a function kept beside its replacement for a rolling update (engine_histories: 0037 keeps
# the 18 parameters of 0030 to 0036 for one release), the one the service calls: the most
# parameters.
_NEWEST = "SELECT {} FROM pg_proc WHERE proname = $1 ORDER BY pronargs DESC LIMIT 1"


def _words(sql: str) -> list[str]:
    """``sql`` as its tokens: what differs only in layout is the same statement."""
    return sql.split()


@pytest.mark.parametrize("pinned", PINNED, ids=lambda p: p.function)
async def test_the_function_runs_its_sql_and_no_other(store: Store, pinned: Pinned) -> None:
    source = await store._pool.fetchval(_NEWEST.format("prosrc"), pinned.function)
    assert source is not None, f"no migration created {pinned.function}"
    match = re.fullmatch(
        r"\s*#variable_conflict use_column\s+BEGIN\s+RETURN QUERY(.*);\s*END\s*", source, re.S
    )
    assert match, source[:200]
    assert _words(match[1]) == _words(pinned.sql), (
        f"the SQL changed: add a migration that replaces {pinned.function} with it"
    )


@pytest.mark.parametrize("pinned", PINNED, ids=lambda p: p.function)
async def test_the_function_carries_the_plan_settings(store: Store, pinned: Pinned) -> None:
    config = await store._pool.fetchval(_NEWEST.format("proconfig"), pinned.function)
    wanted = re.findall(r"SET LOCAL (\w+) = (\w+)", pinned.settings)
    assert wanted, pinned.settings
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


async def test_the_history_read_through_the_function_is_the_sqls(store: Store) -> None:
    web = Target("Deployment", "shop", "web-0")
    event = alert_event(fingerprint="a" * 16)
    for repeat in range(3):
        await store.create_run(
            rule="restart",
            event=alert_event(fingerprint=f"{repeat:016x}"),
            target=web,
            dry_run=True,
        )
    await store.create_run(rule="restart", event=event, target=web, dry_run=True)
    other = alert_event(fingerprint="b" * 16)
    args = batch_arguments(
        [
            history_arguments(other, 3600, [], [], 1000),
            history_arguments(event, 3600, [("restart", web)], [("restart", web)], 1000),
        ]
    )
    async with store._pool.acquire() as conn:
        by_function = [dict(r) for r in await conn.fetch(HISTORY_CALL, *args)]
        assert await conn.fetchval("SHOW enable_seqscan") == "on"
        by_sql = [dict(r) for r in await conn.fetch(HISTORY_SQL, *args)]
    assert by_function == by_sql
    assert {r["part"] for r in by_function if r["tag"] == 1} == {"episode", "recent"}
    # The second read's rows carry its index in the batch; the first found nothing.
    assert [r["part"] for r in by_function if r["tag"] == 0] == [None]
    assert {r["tag"] for r in by_function} == {0, 1}
    assert len([r for r in by_function if r["part"] == "recent"]) == 4
