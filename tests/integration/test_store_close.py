"""Closing the store's pool is bounded (``Database.close(timeout_s=...)``): a connection still in
use then is terminated, and what waited on it ends.

Such a connection is what a stopping ``remediator serve`` met behind PgBouncer once its server
went away: a statement, cancelled, waits for the server to acknowledge the cancellation before
its connection goes back to the pool, and the pool's graceful close waits for that. Here the
statement is held in the network (a relay) for good, as the pooler held it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from receiver.store import Store
from tests.support.relay import HeldRelay, relay_to_postgres, through

pytestmark = pytest.mark.postgres

# The close's bound here, and how long it may take on a busy machine: far under a statement's
# own end (never, while the relay holds it) or asyncpg's command timeout (30 s).
BOUND_S = 0.5
ENOUGH_S = 5.0


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[HeldRelay]:
    async with relay_to_postgres(database_url) as made:
        yield made


async def test_a_close_past_its_bound_terminates_the_connection_in_use(
    database_url: str, relay: HeldRelay
) -> None:
    store = await Store.connect(through(database_url, relay.port), min_size=1, max_size=1)
    relay.hold()
    statement = asyncio.ensure_future(store._pool.fetchval("SELECT 1"))
    await asyncio.wait_for(relay.holding.wait(), 20)
    # Cancelled, as the stop cancels a claim: asyncpg asks the server to cancel it (that too is
    # held) and keeps the connection until the server says it did, which it never does.
    statement.cancel()
    await asyncio.wait({statement}, timeout=BOUND_S)
    assert not statement.done()
    loop = asyncio.get_running_loop()
    began = loop.time()
    closing = asyncio.ensure_future(store.close(timeout_s=BOUND_S))
    await asyncio.wait({closing}, timeout=ENOUGH_S)
    took = loop.time() - began
    if not closing.done():
        closing.cancel()
        pytest.fail(f"the store's close still waiting {took:.1f}s on a connection in use")
    assert closing.result() is False  # terminated, not closed gracefully
    # What waited on the connection ends with it.
    await asyncio.wait({statement}, timeout=ENOUGH_S)
    assert statement.cancelled()


async def test_a_close_within_its_bound_is_graceful(database_url: str) -> None:
    store = await Store.connect(database_url, min_size=1, max_size=2)
    await store.server_now()  # a connection used and released
    assert await asyncio.wait_for(store.close(timeout_s=ENOUGH_S), 2 * ENOUGH_S) is True
