"""A step waiting for its system fails at its bound, not a worker's backoff after it
(receiver/pipeline/unreachable.py, receiver/worker/attempt.py).

The worker retries an item after the longer of what the pipeline asked and its own backoff
(doubling to 5 minutes), so a deferred step's next try, the one that fails it past its bound,
could come minutes after the bound. The deferral now says by when the item must be tried
again (the time left of the bound) and the worker's delay is capped at it. Here the worker's
attempt runs with a backoff of 5 minutes from the first claim, and a 2 s bound: the event's
stored due time is the bound's end, and the try then taken up fails the step there.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import structlog

from receiver.model import RunOutcome
from receiver.store import ClaimedEvent, EventLease
from receiver.worker.attempt import Attempts, Backoff, Claim, event_calls
from tests.integration.test_unreachable_system import web
from tests.support.kube_fixtures import MakeDeployment
from tests.support.outage import Outage
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]

OWNER = "bound-worker"
BOUND_S = 2.0
# The store's clock and the pipeline's are this host's; what separates the deferral's "now"
# from the release's is a statement or two.
SLACK = timedelta(seconds=1)
# A try of the step: its call's retries, 4 over about 1.5 s (remediations.retrying), each
# refused at once, on a machine other tests load.
TRY = timedelta(seconds=5)


def claimed(h: Harness, c: ClaimedEvent) -> Claim:
    """``c`` as the service's worker makes it a claim (receiver.worker.loop ``_claimed``)."""
    lease = EventLease(c.event.id, OWNER, c.attempts)

    async def work() -> Any:
        return await h.pipeline(c.event, lease)

    return Claim("event", c.event.id, c.attempts, c.failures, c.last_error, work, lease)


async def no_claim(owner: str, limit: int, lease_s: float) -> list[Claim]:
    """The queue's claim, unused by an attempt (claimed here by ``one_attempt``)."""
    return []


async def one_attempt(h: Harness, attempts: Attempts) -> None:
    """Claim the event, once it is due, and run one attempt of it as the worker does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        got = await h.store.claim_events(OWNER, 1, 30.0)
        if got:
            break
        assert loop.time() < deadline, "the event never came due"
        await asyncio.sleep(0.05)  # polling the queue for the due item, as the worker does
    queue = event_calls(h.store, no_claim)
    assert await attempts.run(queue, claimed(h, got[0]))


async def test_the_retry_of_a_waiting_step_is_due_at_its_bound_not_after_the_backoff(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_namespace: str,
    outage: Outage,
) -> None:
    await make_deployment("web", replicas=1)
    h = await make_harness(
        RESTART_WEB, kube=outage.client, dry_run=False, unreachable_retry_s=BOUND_S
    )
    attempts = Attempts(
        owner=OWNER,
        lease_s=30,
        max_attempts=3,
        backoff=Backoff(300.0, 300.0),  # 2.5 to 5 minutes from the first attempt
        log=structlog.get_logger("test.bound"),
    )
    outage.begin()
    await h.intake.accept(notification(alert(web(kube_namespace))))
    await one_attempt(h, attempts)
    run = await h.only_run()
    (step,) = run.steps
    assert step.outcome == "pending", step.message
    assert step.started_at is not None
    end = step.started_at + timedelta(seconds=BOUND_S)
    due = await h.store.next_event_due()
    assert due is not None
    # Due when the bound runs out: not sooner (a try then would only wait again), nor a
    # backoff later (before, 2.5 to 5 minutes after the first try).
    assert end <= due < end + SLACK, (due, end)

    await one_attempt(h, attempts)
    run = await h.only_run()
    assert run.outcome is RunOutcome.FAILED, run.error
    (step,) = run.steps
    assert step.outcome == "failed"
    assert "2 tries from " in step.message, step.message
    assert step.finished_at is not None
    # Failed at its bound: the last try's own retries (about 1.5 s) after it, not minutes.
    assert end <= step.finished_at < end + TRY + SLACK, (step.finished_at, end)
    assert await h.store.queue_depth() == 0
