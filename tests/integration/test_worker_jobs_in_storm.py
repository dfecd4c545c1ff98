"""A job does not wait for an event storm to drain: while events fill every claim, the worker
still looks for jobs (an approved run going on, a verification's deadline) at least every
JOBS_EVERY_S, and takes them first."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from receiver.model import AlertEvent, Disposition
from receiver.store import ClaimedJob, JobKind, Store
from receiver.worker import Worker
from tests.support.events import new_event, new_run
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres

STORM = 400


async def test_a_due_job_is_taken_while_a_storm_of_events_is_still_queued(store: Store) -> None:
    for start in range(0, STORM, 100):
        await store.insert_events([new_event(f"{i:016x}") for i in range(start, start + 100)])
    run_id = await new_run(store)
    assert await store.enqueue_job(JobKind.RESUME_RUN, run_id) is not None

    async def work(event: AlertEvent) -> Disposition:
        await asyncio.sleep(0.02)  # the storm's events each take a little work
        return Disposition.done()

    queued_when_taken: list[int] = []

    async def job(claimed: ClaimedJob) -> Disposition:
        queued_when_taken.append(await store.queue_depth())
        return Disposition.done()

    log = structlog.get_logger("test.jobs-in-storm")
    async with Worker(
        store, work, process_job=job, concurrency=4, lease_s=30, poll_interval_s=0.1, log=log
    ):
        await eventually(lambda: _taken(queued_when_taken))
    # 400 events at 4 at a time and 20 ms each take 2 s: the job came within about one
    # JOBS_EVERY_S, with most of the storm still queued, not after it.
    assert queued_when_taken[0] > STORM // 4, queued_when_taken


async def _taken(found: list[int]) -> bool:
    return bool(found)
