"""A lease's extension rewrites no index entry of its event: it is a HOT update.

An update that changes a column an index names (as a key, an expression or a predicate) writes
a new entry in every index of the table, a WAL record each. ``lease_until`` was the key of
alert_events_leases, which only the claim's look for expired leases read; migration 0042
dropped it (the claim walks alert_events_claimed_by_fingerprint instead), so neither a claim
nor a lease's extension indexes the expiry time. This test counts the updates PostgreSQL made
HOT (pg_stat_user_tables of the one connection that made them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from receiver.store import Store
from tests.support.events import new_event

pytestmark = pytest.mark.postgres


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[Store]:
    """A store of one connection: the updates and the statistics read after them run on the
    same backend, whose counters pg_stat_force_next_flush publishes."""
    created = await Store.connect(database_url, min_size=1, max_size=1)
    try:
        yield created
    finally:
        await created.close()


async def _updates(store: Store) -> tuple[int, int]:
    """(updates, of them HOT) of alert_events so far."""
    async with store._pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        row = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE relname = 'alert_events'"
        )
        assert row is not None
        return int(row[0]), int(row[1])


async def test_a_lease_extension_is_a_hot_update(one_connection: Store) -> None:
    store = one_connection
    await store.insert_events([new_event(1)])
    [claimed] = await store.claim_events("worker-1", 1, 60.0)
    before = await _updates(store)
    for _ in range(3):
        assert await store.extend_lease(claimed.event.id, "worker-1", claimed.attempts, 60.0)
    updates, hot = await _updates(store)
    # Three updates, each on the event's page (a new table has room on it) and none changing
    # an indexed column. With alert_events_leases: (3, 0).
    assert (updates - before[0], hot - before[1]) == (3, 3)
