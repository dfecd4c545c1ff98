"""A worker whose store stops answering gives its work up by the time its lease runs out, not a
command timeout later: the replica that takes the item over never works beside it.

Worker A reaches PostgreSQL through a relay that the test stalls (a network partition, a
frozen connection: the bytes wait, nothing is answered); worker B reaches it directly. Before,
A's lease keeper counted one lease extension interval per failed extension, however long the
failed call had waited: each waited out the pool's command timeout (30 s), so A went on working
for three of them, 90 s, while B, polling, took the item once the lease ran out (2 s) and
worked beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import structlog

from receiver.model import AlertEvent, Disposition
from receiver.store import Store
from receiver.worker import Worker
from tests.support.events import new_event
from tests.support.polling import current, eventually
from tests.support.relay import HeldRelay, relay_to_postgres, through

pytestmark = pytest.mark.postgres

LOG = structlog.get_logger("test.lease_keeper")
LEASE_S = 2.0


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[HeldRelay]:
    """A relay to the test's PostgreSQL whose traffic the test can hold (``hold``): held, the
    worker's statements wait in it, as in a partition TCP rides out, and nothing answers."""
    async with relay_to_postgres(database_url) as made:
        yield made


@dataclass
class Holder:
    """A process() that works until cancelled, saying when it began and when it stopped."""

    began: dict[int, float] = field(default_factory=dict)
    stopped: dict[int, float] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, event: AlertEvent) -> Disposition:
        self.began[event.id] = time.monotonic()
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped[event.id] = time.monotonic()
        return Disposition.done()


@dataclass
class Taker:
    """A process() that finishes at once, saying when it began."""

    began: dict[int, float] = field(default_factory=dict)

    async def __call__(self, event: AlertEvent) -> Disposition:
        self.began[event.id] = time.monotonic()
        return Disposition.done()


async def test_a_worker_cut_off_from_its_store_stops_working_before_another_takes_over(
    store: Store, database_url: str, relay: HeldRelay
) -> None:
    cut_off = await Store.connect(through(database_url, relay.port), min_size=1, max_size=4)
    holder, taker = Holder(), Taker()
    a = Worker(cut_off, holder, owner="a", concurrency=1, lease_s=LEASE_S, poll_interval_s=0.1)
    b = Worker(store, taker, owner="b", concurrency=1, lease_s=LEASE_S, poll_interval_s=0.1)
    try:
        await store.insert_events([new_event(1)])
        await a.start()
        await asyncio.wait_for(holder.started.wait(), 10)
        (event_id,) = holder.began
        relay.hold()
        stalled = time.monotonic()
        await b.start()
        await eventually(current(lambda: event_id in taker.began))
        # A had stopped working on it before B began: never two holders at once.
        assert event_id in holder.stopped, "A still worked on the event B had taken over"
        assert holder.stopped[event_id] <= taker.began[event_id]
        assert holder.stopped[event_id] - stalled <= LEASE_S + 1.0
    finally:
        relay.let_through()
        await b.stop(grace_s=1)
        await a.stop(grace_s=1)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(cut_off.close(), 30)
