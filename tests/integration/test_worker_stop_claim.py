"""A claim on its way when the worker begins to stop (SIGTERM): the items it brings back are
handed back at once, unworked. And an item whose work began before the stop, handed back by
its admission, is due again at once.

Before, the claim loop started their work as if nothing had happened: each was read, planned
and taken up to its admission, which a stopping service refuses (``Deps.not_admitted_at_stop``),
and only then released, its attempt counted and due after a backoff, so another replica waited
for an item nobody here was going to work on. Now the worker hands each back as it arrives:
pending, due now, its attempt taken back; another worker claims it at once. A real worker on
the test PostgreSQL, its connection through a relay that holds the claim in the network until
the stop has begun.

Handed back by its admission, an item was released due only after the backoff on its
attempts (a retry's), though nothing failed or had to wait: another replica waited seconds
for it, minutes for an item retried often before. Now it is due at once.

A claim that never comes back (behind PgBouncer, a server that went away: the pooler holds the
statement; here the relay holds it for good) held the stop past its budget: cancelled after
the claim wait, asyncpg asks the server to cancel it and waits for that to be acknowledged, up
to the pool's command timeout (30 s), and ``serve`` had not exited 30 s after SIGTERM. Now the
claim wait includes its cancellation, and what is left then is ended by the store's close,
bounded too. And a claim loop waiting out its backoff after a failed claim held the stop for
the whole claim wait; it now ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from receiver.model import AlertEvent, Disposition, Target
from receiver.stop_budget import CLAIM_WAIT_S
from receiver.store import EventLease, Store
from receiver.worker import Worker
from receiver.worker.attempt import LeasedProcess, Process
from tests.support.events import alert_event, new_event
from tests.support.leases import take_over_job
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, MakeHarness
from tests.support.polling import current, eventually
from tests.support.postgres import PostgresServer, drop_database
from tests.support.relay import HeldRelay, relay_to_postgres, through
from tests.support.said import Said

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[HeldRelay]:
    async with relay_to_postgres(database_url) as made:
        yield made


def _one_at_a_time(
    store: Store, process: Process | LeasedProcess, database_url: str, **more: Any
) -> Worker:
    """A worker ``a`` on ``store``, one item at a time, its lease and poll a minute (no test
    waits for either), woken by LISTEN on ``database_url``; ``more``: its other arguments."""
    return Worker(
        store,
        process,
        owner="a",
        concurrency=1,
        lease_s=60.0,
        poll_interval_s=60.0,
        listen_dsn=database_url,
        **more,
    )


async def test_a_claim_that_comes_back_after_the_stop_began_is_handed_back_unworked(
    store: Store, database_url: str, relay: HeldRelay
) -> None:
    await store.insert_events([new_event(1)])
    worked: list[int] = []

    async def process(event: AlertEvent) -> Disposition:
        worked.append(event.id)
        return Disposition.done()

    stalled = await Store.connect(through(database_url, relay.port), min_size=1, max_size=1)
    worker = _one_at_a_time(stalled, process, database_url)
    try:
        relay.hold()
        await worker.start()
        # The worker's claim is on its way when SIGTERM comes.
        await asyncio.wait_for(relay.holding.wait(), 20)
        worker.stop_claiming()
        relay.let_through()
        await worker.stop(grace_s=10.0)
    finally:
        relay.let_through()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stalled.close(), 30)

    assert worked == []
    assert await _queued_event(database_url) == {
        "state": "pending",
        "lease_owner": None,
        "attempts": 0,
        "failures": 0,
        "last_error": None,
        "due": True,
    }
    # Another replica takes it at once.
    (claimed,) = await store.claim_events("b", 1, 60.0)
    assert (claimed.attempts, claimed.failures) == (1, 0)


async def test_an_item_its_admission_hands_back_at_a_stop_is_due_again_at_once(
    make_harness: MakeHarness, database_url: str
) -> None:
    h = await make_harness(RESTART_WEB)
    labels = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    await h.intake.accept(notification(alert(labels)))

    async def sigterm_as_it_begins(
        event: AlertEvent, lease: EventLease | None = None
    ) -> Disposition:
        # SIGTERM lands while the event's work is under way (serve's handler does these two).
        h.pipeline.wind_down()
        worker.stop_claiming()
        began.set()
        return await h.pipeline(event, lease)

    # A backoff no test waits out: a release that waited on it would be due a minute later.
    worker = _one_at_a_time(
        h.store,
        sigterm_as_it_begins,
        database_url,
        lease_to_process=True,
        backoff_base_s=60.0,
        backoff_max_s=60.0,
    )
    began = asyncio.Event()
    await worker.start()
    await asyncio.wait_for(began.wait(), 20)
    await worker.stop(grace_s=10.0)

    assert await h.runs() == []  # no guard asked, nothing stored
    assert await _queued_event(database_url) == {
        "state": "pending",
        "lease_owner": None,
        "attempts": 1,  # its work began: read, planned
        "failures": 0,
        "last_error": "the service stopped before the run steps were admitted: the next worker "
        "admits them",
        "due": True,
    }


async def test_a_claim_that_never_comes_back_holds_the_stop_no_longer_than_the_claim_wait(
    store: Store, database_url: str, relay: HeldRelay
) -> None:
    await store.insert_events([new_event(1)])

    async def process(event: AlertEvent) -> Disposition:
        raise AssertionError(f"event {event.id} worked on")

    # Store.connect's command timeout (30 s, the service's too) is how long asyncpg waits for
    # the server to acknowledge a cancellation: how long the stop waited before.
    stalled = await Store.connect(through(database_url, relay.port), min_size=1, max_size=1)
    worker = _one_at_a_time(stalled, process, database_url)
    loop = asyncio.get_running_loop()
    try:
        relay.hold()
        await worker.start()
        await asyncio.wait_for(relay.holding.wait(), 20)  # the claim is on its way, for good
        worker.stop_claiming()  # SIGTERM
        began = loop.time()
        stopping = asyncio.ensure_future(worker.stop(grace_s=10.0))
        await asyncio.wait({stopping}, timeout=CLAIM_WAIT_S + 10)
        stopped_after = loop.time() - began
        if not stopping.done():
            stopping.cancel()
            pytest.fail(f"worker.stop still waiting {stopped_after:.0f}s after the stop began")
        stopping.result()
        assert stopped_after < CLAIM_WAIT_S + 2.0  # far under the 30 s it took
        # The claim's connection is still in use: the close gives up on it and terminates.
        began = loop.time()
        assert not await asyncio.wait_for(stalled.close(timeout_s=1.0), 10)
        assert loop.time() - began < 3.0
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stalled.close(timeout_s=1.0), 10)
    # Nothing lost: the claim never reached the server, and another replica takes the event.
    (claimed,) = await store.claim_events("b", 1, 60.0)
    assert (claimed.event.id, claimed.attempts, claimed.failures) == (1, 1, 0)


async def test_a_claim_loop_waiting_out_its_backoff_ends_at_once_at_the_stop(
    database_url: str, pg_server: PostgresServer
) -> None:
    async def process(event: AlertEvent) -> Disposition:
        return Disposition.done()

    gone = await Store.connect(database_url, min_size=1, max_size=1)
    said = Said()
    # After a failed claim, the next waits 15 to 30 s (the poll caps it at 30).
    worker = _one_at_a_time(gone, process, database_url, backoff_base_s=60.0, log=said)
    loop = asyncio.get_running_loop()
    try:
        await worker.start()
        await asyncio.wait_for(worker.listening.wait(), 20)
        await drop_database(pg_server, database_url)  # the database goes away
        worker.wake()
        # Its pool connection was ended: unavailable, or the database missing when it reconnects.
        failed = ("store unavailable while claiming", "claiming work failed")
        await eventually(
            current(lambda: [line for line in said.lines if line[1] in failed]),
            what="a failed claim",
        )
        began = loop.time()
        await asyncio.wait_for(worker.stop(grace_s=10.0), CLAIM_WAIT_S + 10)
        stopped_after = loop.time() - began
        assert stopped_after < CLAIM_WAIT_S / 2, "the claim loop slept through the stop"
        assert said.events("stopped claiming")
    finally:
        await asyncio.wait_for(gone.close(timeout_s=1.0), 10)


async def test_the_listen_connection_ends_as_the_stop_begins(
    store: Store, database_url: str
) -> None:
    """Its wake-ups claim nothing once the stop began: it ends then, not when ``stop`` comes
    to it (nor does a reconnecting one go on trying meanwhile)."""

    async def process(event: AlertEvent) -> Disposition:
        return Disposition.done()

    worker = _one_at_a_time(store, process, database_url)
    await worker.start()
    try:
        await asyncio.wait_for(worker.listening.wait(), 20)
        worker.stop_claiming()
        await eventually(
            current(lambda: not worker.listening.is_set()),
            timeout_s=CLAIM_WAIT_S / 2,
            what="the LISTEN connection closed",
        )
    finally:
        await worker.stop(grace_s=1.0)


async def test_a_job_handed_back_is_due_now_its_attempt_not_counted(store: Store) -> None:
    """The store's half for jobs: a job claimed, its lease then run out (its worker died: a
    failure the next claim counts), and handed back by the worker that claimed it next."""
    await store.insert_events([new_event(1)])
    (claimed,) = await store.claim_events("a", 1, 60.0)
    run_id = await store.create_run(
        rule="r",
        event=alert_event(claimed.event.id, 1),
        target=Target("Deployment", "shop", "checkout"),
        dry_run=True,
    )
    assert run_id is not None
    await store.enqueue_job("resume_run", run_id)
    (job,) = await store.claim_jobs("a", 1, 60.0)
    taken = await take_over_job(store, job.id, "b")
    assert (taken.attempts, taken.failures) == (2, 1)
    assert not await store.hand_back_job(job.id, "a", job.attempts)  # only its holder hands it back
    assert await store.hand_back_job(job.id, "b", taken.attempts)
    (again,) = await store.claim_jobs("c", 1, 60.0)
    assert (again.id, again.attempts, again.failures) == (job.id, 2, 1)


async def _queued_event(database_url: str) -> dict[str, Any]:
    """The one alert event's queue columns, and whether it is due now."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT state, lease_owner, attempts, failures, last_error,"
            " not_before <= remediator_now() AS due FROM alert_events"
        )
    finally:
        await conn.close()
    assert row is not None
    return dict(row)
