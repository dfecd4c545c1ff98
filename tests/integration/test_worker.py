"""The worker against a real PostgreSQL, processing events: each once, those of one alert in
order, retries (asked for, or an exception) released with a delay that backs off with the
attempts. Wake-ups: test_worker_wakeups.py; leases, crashes and outages:
test_worker_leases.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from receiver.model import Disposition, Status
from receiver.store import Store
from receiver.worker import Worker
from tests.support.events import new_event
from tests.support.polling import eventually
from tests.support.worker_loop import Recorder, _depth_is

pytestmark = pytest.mark.postgres


async def test_processes_every_event_once(store: Store, workers: Callable[..., Worker]) -> None:
    process = Recorder()
    worker = workers(process, owner="w1")
    await store.insert_events([new_event(i) for i in range(25)])
    await worker.start()
    await eventually(lambda: _depth_is(store, 0))
    assert sorted(e.id for e in process.seen) == sorted({e.id for e in process.seen})
    assert len(process.seen) == 25


async def test_retry_disposition_and_exceptions_release_with_delay(
    store: Store, workers: Callable[..., Worker], database_url: str
) -> None:
    process = Recorder()
    process.answers = [Disposition.retry(0.3, "redis unreachable"), RuntimeError("boom")]
    worker = workers(process)
    await store.insert_events([new_event(3)])
    await worker.start()
    await eventually(lambda: _depth_is(store, 0))
    assert len(process.seen) == 3  # retry, exception, done
    event = await store.get_event(process.seen[0].id)
    assert event is not None
    assert event["state"] == "done"
    assert event["attempts"] == 3
    assert event["last_error"] == "RuntimeError: boom"


async def test_a_retry_asked_for_at_once_still_backs_off_with_the_attempts(
    store: Store, workers: Callable[..., Worker]
) -> None:
    """Guards down for hours: the pipeline asks to retry soon, every time. The worker's
    backoff for the attempt sets the floor, so the queue is not polled in a tight loop."""
    process = Recorder()
    process.answers = [Disposition.retry(0.0, "guards unavailable")]
    worker = workers(process, backoff_base_s=100.0)
    await store.insert_events([new_event(4)])
    await worker.start()
    await asyncio.wait_for(process.started.wait(), 10)

    async def released() -> bool:
        event = await store.get_event(process.seen[0].id)
        return event is not None and event["state"] == "pending"

    await eventually(released)
    event = await store.get_event(process.seen[0].id)
    assert event is not None
    wait = (event["not_before"] - await store.server_now()).total_seconds()
    assert wait > 40  # base 100 s with jitter of 0.5x to 1x, minus the test's own time
    assert event["last_error"] == "guards unavailable"


async def test_events_of_one_alert_run_in_order(
    store: Store, workers: Callable[..., Worker]
) -> None:
    process = Recorder()
    worker = workers(process, concurrency=8)
    await store.insert_events([new_event(7), new_event(7, Status.RESOLVED), new_event(8)])
    await worker.start()
    await eventually(lambda: _depth_is(store, 0))
    statuses = [e.status for e in process.seen if e.fingerprint == f"{7:016x}"]
    assert statuses == [Status.FIRING, Status.RESOLVED]
