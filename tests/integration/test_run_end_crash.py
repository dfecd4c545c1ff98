"""A worker that dies as its run ends, and the run taken up again.

Found by killing replicas at random while alerts came in (two ``serve`` processes on one
PostgreSQL and Redis, rules whose steps call a local HTTP server that counts the calls). The
death is made where a dying process makes it: a store write commits, then raises a
BaseException that nothing in the pipeline catches. Another worker then takes the event over,
as it does once the first one's lease ran out. Real PostgreSQL and Redis.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from receiver.model import RunOutcome
from receiver.store import EventLease
from remediations.base import ActionContext, Outcome, Result
from remediations.targets import Target
from tests.support.leases import take_over
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.rules import Restart

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class WorkerDied(BaseException):
    """What the process's death looks like from inside: nothing catches it."""


class Acts(Restart):
    """A step that changes something."""

    name: ClassVar[str] = "test.acts"

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        return Result(Outcome.OK, "changed", {"n": 0}, {"n": 1})


class Counts(Acts):
    """A step that changes something each time it is called, and counts the calls."""

    name: ClassVar[str] = "test.counts"

    def __init__(self) -> None:
        self.calls = 0

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        self.calls += 1
        return await super().run(ctx, target, params)


def _labels(pod: str) -> dict[str, str]:
    # Alerts of several pods of one Deployment: their runs act on one target.
    return {"alertname": "HighMemoryUsage", "namespace": "shop", "pod": pod}


@pytest.mark.parametrize("stopper", [Outcome.FAILED, Outcome.REFUSED])
async def test_a_step_that_stopped_the_run_stops_it_when_its_worker_died_before_the_outcome(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch, stopper: Outcome
) -> None:
    """The first step fails (or its precondition refuses it), and the worker dies once that is
    recorded, before the run's outcome. Before, the run taken up again ran the second step,
    which a failed step must stop, and ended ``succeeded``."""

    class Stops(Restart):
        name: ClassVar[str] = "test.stops"

        async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
            return Result(stopper, f"{stopper} on purpose")

    counts = Counts()
    h = await make_harness(
        f"""
rules:
  - name: two-steps
    match: ['alertname="HighMemoryUsage"']
    target: {{kind: Deployment, namespace: shop, name: web}}
    steps:
      - action: {Stops.name}
      - action: {Counts.name}
""",
        extra_actions=[Stops(), counts],
        dry_run=False,
    )
    await h.intake.accept(notification(alert(_labels("web-1"))))
    (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)
    record_step = h.store.record_step

    async def dying(run_id: str, **fields: Any) -> None:
        await record_step(run_id, **fields)
        if fields["outcome"] == stopper:
            raise WorkerDied(f"worker-a died once its step was recorded {stopper}")

    monkeypatch.setattr(h.store, "record_step", dying)
    with pytest.raises(WorkerDied):
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a"))
    monkeypatch.undo()
    lease = await take_over(h.store, claimed.event.id, "worker-b")
    assert (await h.pipeline(claimed.event, lease)).is_done

    run = await h.only_run()
    assert counts.calls == 0
    expected = RunOutcome.FAILED if stopper is Outcome.FAILED else RunOutcome.REFUSED
    assert run.outcome is expected, (run.outcome, run.error)
    assert [s.outcome for s in run.steps] == [stopper, "not_run"]
    assert run.steps[1].message == f"not run: the run ended {expected}"
