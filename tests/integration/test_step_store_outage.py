"""A step that acted while the store went away before its result was recorded.

An action that must not act twice (``replay_safe`` False) is marked ``started`` before it acts.
When the store is out of reach as the step's result is written, the event is retried, and
the step's next try finds the mark and records the step ``interrupted`` without acting again.
Its message said "a worker stopped while this step ran", and the run's error "a worker stopped
while a step ran", although no worker stopped: the reviewer was sent after a crash that never
happened. The process that ran the step knows what happened, and now says so.

Against the test PostgreSQL through a relay (tests.support.relay) that goes down as the step
acts, as a server that went away does, and comes back before the event is retried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest
from pydantic import BaseModel

from receiver.model import RunOutcome
from receiver.pipeline.marked import UNRECORDED
from receiver.store import EventLease, Store, StoreUnavailable
from remediations.base import ActionContext, Outcome, Result
from remediations.targets import Target
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.relay import HeldRelay, relay_to_postgres, through
from tests.support.rules import Restart

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
RULES = """
rules:
  - name: once
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.outage_count
"""


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[HeldRelay]:
    async with relay_to_postgres(database_url) as made:
        yield made


@pytest.fixture
async def store(database_url: str, relay: HeldRelay) -> AsyncIterator[Store]:
    """The harness's store, through the relay: it goes down when the relay does."""
    created = await Store.connect(through(database_url, relay.port), min_size=1, max_size=4)
    created.verify_grace_s = 0.0
    try:
        yield created
    finally:
        await created.close()


class OutageCount(Restart):
    """A step that must not act twice, counts its calls, and takes the store down as it acts."""

    name: ClassVar[str] = "test.outage_count"
    replay_safe: ClassVar[bool] = False
    disruptive: ClassVar[bool] = True

    def __init__(self, relay: HeldRelay) -> None:
        self.relay = relay
        self.calls = 0

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        self.calls += 1
        self.relay.go_down()
        return Result(Outcome.OK, f"counted to {self.calls}")


async def test_a_step_whose_record_the_store_lost_says_so_not_a_stopped_worker(
    make_harness: MakeHarness, relay: HeldRelay
) -> None:
    count = OutageCount(relay)
    h = await make_harness(RULES, dry_run=False, extra_actions=[count])
    await h.intake.accept(notification(alert(LABELS)))
    (claimed,) = await h.store.claim_events("worker-a", 1, 60.0)
    lease = EventLease(claimed.event.id, "worker-a", claimed.attempts)

    with pytest.raises(StoreUnavailable):
        await h.pipeline(claimed.event, lease)
    relay.come_back()
    # The event's retry, in the same process (its lease still held).
    disposition = await h.pipeline(claimed.event, lease)
    assert disposition.is_done

    run = await h.only_run()
    assert count.calls == 1
    assert run.outcome is RunOutcome.FAILED
    assert run.error is not None
    assert run.error.startswith("the store was unreachable when a step's result"), run.error
    (step,) = run.steps
    assert step.outcome == Outcome.INTERRUPTED
    assert step.message.startswith(UNRECORDED), step.message
    assert "(its call had ended ok: counted to 1)" in step.message
    assert "a worker stopped" not in step.message


class UnconfiguredOutage(Restart):
    """A step whose system is not configured (it records dry_run without acting), and the store
    goes away as the step says what it would have done, before its result is recorded."""

    name: ClassVar[str] = "test.unconfigured_outage"

    def __init__(self, relay: HeldRelay) -> None:
        self.relay = relay
        self.outages = 1  # how many of its steps take the store down

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset({"test-system"})

    def describe(self, target: Target, params: BaseModel) -> str:
        if self.outages > 0:
            self.outages -= 1
            self.relay.go_down()
        return super().describe(target, params)


async def test_an_unacted_step_whose_record_the_store_lost_is_an_outage_not_a_failure(
    make_harness: MakeHarness, relay: HeldRelay
) -> None:
    """A step that ends without its action being called (its system not configured: dry-run;
    params that do not fit) had no start mark, and the store going away as its result was
    written raised UnboundLocalError ('start') in place of StoreUnavailable: the worker counted
    an outage as the event's failure (toward its dead letter) and logged it as an error with a
    traceback. Now the outage is an outage, and the event's retry records the step."""
    action = UnconfiguredOutage(relay)
    h = await make_harness(
        RULES.replace("test.outage_count", action.name), dry_run=False, extra_actions=[action]
    )
    await h.intake.accept(notification(alert(LABELS)))
    (claimed,) = await h.store.claim_events("worker-a", 1, 60.0)
    lease = EventLease(claimed.event.id, "worker-a", claimed.attempts)

    with pytest.raises(StoreUnavailable):
        await h.pipeline(claimed.event, lease)
    relay.come_back()  # and stays: the retry's step finds the store there
    disposition = await h.pipeline(claimed.event, lease)
    assert disposition.is_done
    run = await h.only_run()
    (step,) = run.steps
    assert step.outcome == Outcome.DRY_RUN, step.message
    assert step.message.startswith("dry-run (test-system not configured)"), step.message
