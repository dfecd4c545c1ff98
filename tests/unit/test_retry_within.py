"""A retry that must come by a time, whatever the worker's backoff (receiver.model
``Verdict.within_s``, receiver.pipeline.events ``disposition_of``, receiver.worker.attempt).

The end-to-end case (a step waiting for its system, failed at its bound) is
tests/integration/test_unreachable_bound.py; these are the combinations of several runs of
one event, and the worker's cap.
"""

from __future__ import annotations

import asyncio
import dataclasses

import structlog

from receiver.model import Disposition, Verdict
from receiver.pipeline.events import disposition_of
from receiver.worker.attempt import Attempts, Backoff, Claim
from tests.unit.test_attempts import Queue


def test_the_soonest_bound_of_an_events_runs_caps_its_retry() -> None:
    later = Verdict.retry(5.0, "guards unavailable")
    bounded = Verdict.retry(5.0, "its system could not be reached", within_s=1.5)
    disposition = disposition_of([later, bounded, Verdict.retry(5.0, "x", within_s=3.0)])
    assert disposition.retry_after_s == 1.5
    assert disposition.retry_within_s == 1.5
    assert disposition_of([later]).retry_within_s is None
    assert disposition_of([Verdict.retry(1.0, "y", within_s=-2.0)]).retry_within_s == 0.0


async def test_the_worker_caps_its_backoff_at_the_time_the_retry_is_due_by() -> None:
    queue = Queue()
    delays: list[float] = []
    calls = queue.calls()

    async def release(
        item_id: int, owner: str, attempts: int, delay_s: float, error: str | None
    ) -> bool:
        delays.append(delay_s)
        return True

    async def work() -> Disposition:
        return Disposition.retry(0.5, "waits", within_s=2.0)

    async def work_unbounded() -> Disposition:
        return Disposition.retry(0.5, "waits")

    attempts = Attempts(
        owner="w",
        lease_s=30,
        max_attempts=3,
        backoff=Backoff(300.0, 300.0),
        log=structlog.get_logger("test.within"),
    )
    queue_calls = dataclasses.replace(calls, release=release)
    for job in (work, work_unbounded):
        claim = Claim("event", 1, attempts=4, failures=0, last_error=None, work=job)
        assert await attempts.run(queue_calls, claim, leased_at=asyncio.get_running_loop().time())
    assert delays[0] == 2.0  # before: the backoff, 150 to 300 s
    assert 150.0 <= delays[1] <= 300.0
