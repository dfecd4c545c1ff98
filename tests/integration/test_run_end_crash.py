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
import redis.asyncio
from pydantic import BaseModel

from receiver.guards.policy import GuardSettings
from receiver.model import RunOutcome
from receiver.store import EventLease
from remediations.base import ActionContext, Outcome, Result
from remediations.targets import Target
from tests.support.leases import take_over
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.rules import Restart
from tests.support.target_locks import HoldsWrites, lock_holder, pass_writes_held

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


class Fails(Restart):
    """A step that fails."""

    name: ClassVar[str] = "test.fails"

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        return Result(Outcome.FAILED, "failed")


def _rule(action: str) -> str:
    return f"""
rules:
  - name: one-step
    match: ['alertname="HighMemoryUsage"']
    target: {{kind: Deployment, namespace: shop, name: web}}
    steps:
      - action: {action}
"""


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
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts))
    monkeypatch.undo()
    lease = await take_over(h.store, claimed.event.id, "worker-b")
    assert (await h.pipeline(claimed.event, lease)).is_done

    run = await h.only_run()
    assert counts.calls == 0
    expected = RunOutcome.FAILED if stopper is Outcome.FAILED else RunOutcome.REFUSED
    assert run.outcome is expected, (run.outcome, run.error)
    assert [s.outcome for s in run.steps] == [stopper, "not_run"]
    assert run.steps[1].message == f"not run: the run ended {expected}"


async def _dies_after_the_outcome(
    h: Harness, monkeypatch: pytest.MonkeyPatch, final: RunOutcome, *, at_release: bool = False
) -> str:
    """Worker A runs the first alert's event and dies as soon as the run's ``final`` outcome
    has committed (``at_release``: as it releases the target lock, its call never reaching
    Redis); worker B then takes the event over and processes it. The run's id."""
    await h.intake.accept(notification(alert(_labels("web-1"))))
    (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)
    set_run_outcome, release, record_result = (
        h.store.set_run_outcome,
        h.guards.release,
        h.guards.record_result,
    )
    dead: list[bool] = []

    async def dying(run_id: str, outcome: RunOutcome, **fields: Any) -> bool:
        moved = await set_run_outcome(run_id, outcome, **fields)
        if outcome is final:
            dead.append(True)
            raise WorkerDied(f"worker-a died once the run was {final}")
        return moved

    async def unless_dead(original: Any, *args: Any, **kwargs: Any) -> Any:
        if at_release and original is release:
            dead.append(True)
        if dead:
            raise WorkerDied("a dead worker's call never reaches Redis")
        return await original(*args, **kwargs)

    monkeypatch.setattr(h.store, "set_run_outcome", dying)
    monkeypatch.setattr(h.guards, "release", lambda *a, **k: unless_dead(release, *a, **k))
    monkeypatch.setattr(
        h.guards, "record_result", lambda *a, **k: unless_dead(record_result, *a, **k)
    )
    with pytest.raises(WorkerDied):
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts))
    monkeypatch.undo()

    lease = await take_over(h.store, claimed.event.id, "worker-b")
    disposition = await h.pipeline(claimed.event, lease)
    assert disposition.is_done
    if not disposition.settled:
        await h.store.complete_event(claimed.event.id, "worker-b", lease.attempts)
    (run,) = await h.runs()
    assert run.outcome is final
    return run.id


@pytest.mark.parametrize("at_release", [False, True], ids=["after-outcome", "at-release"])
async def test_a_run_whose_worker_died_as_it_ended_leaves_the_target_free(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch, at_release: bool
) -> None:
    """Before, a death after the outcome left the next run on the Deployment pending,
    "target is locked by run <the first>", until the lock's TTL ran out. A death as the lock
    is released (the outcome not written yet) leaves the run to its retry, which ends it."""
    h = await make_harness(_rule(Acts.name), extra_actions=[Acts()], dry_run=False)
    first = await _dies_after_the_outcome(
        h, monkeypatch, RunOutcome.SUCCEEDED, at_release=at_release
    )
    ended = await h.store.get_run(first)
    assert ended is not None
    assert [s.outcome for s in ended.steps] == ["ok"]

    await h.deliver(_labels("web-2"))
    (second,) = [r for r in await h.runs() if r.id != first]
    assert second.outcome is RunOutcome.SUCCEEDED, (second.outcome, second.error)


async def test_a_failed_run_whose_worker_died_after_its_outcome_feeds_the_breaker(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One failure opens this rule's breaker. Before, the failure of a run whose worker died
    once its outcome was written was never counted (and the target stayed locked), so the
    next run waited for the lock instead of being refused by the breaker."""
    h = await make_harness(
        _rule(Fails.name),
        GuardSettings(breaker_failures=1),
        extra_actions=[Fails()],
        dry_run=False,
    )
    first = await _dies_after_the_outcome(h, monkeypatch, RunOutcome.FAILED)

    await h.deliver(_labels("web-2"))
    (second,) = [r for r in await h.runs() if r.id != first]
    assert second.outcome is RunOutcome.REFUSED, (second.outcome, second.error)
    assert second.refusal_guard == "breaker"


async def test_a_failure_fed_again_by_the_retry_is_counted_once(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies as it releases the lock, after feeding the breaker and before the
    run's outcome: the retry feeds it again, under the same failure. With two failures to
    open the breaker, the next run still runs (and fails: the second failure), and the one
    after it is refused."""
    h = await make_harness(
        _rule(Fails.name),
        GuardSettings(breaker_failures=2),
        extra_actions=[Fails()],
        dry_run=False,
    )
    first = await _dies_after_the_outcome(h, monkeypatch, RunOutcome.FAILED, at_release=True)

    await h.deliver(_labels("web-2"))
    (second,) = [r for r in await h.runs() if r.id != first]
    assert second.outcome is RunOutcome.FAILED, (second.outcome, second.error)
    await h.deliver(_labels("web-3"))
    (third,) = [r for r in await h.runs() if r.id not in (first, second.id)]
    assert third.outcome is RunOutcome.REFUSED, (third.outcome, third.error)
    assert third.refusal_guard == "breaker"


async def test_a_run_whose_lock_redis_did_not_take_back_ends_once_it_does(
    make_harness: MakeHarness, redis_client: redis.asyncio.Redis
) -> None:
    """Redis does not answer as the run gives its target lock back (a blip; a Redis that
    persists, as a deployment's must, keeps the lock over its restart): here it holds every
    write from the end of the step on (``CLIENT PAUSE WRITE``). Before, the run ended
    ``succeeded`` all the same and its lock stayed: every later run on the Deployment waited
    out ``guards.lock_ttl`` (found by restarting a persistent Redis under two replicas). Now
    the run stays running and its event is retried; the retry, Redis back, gives the lock back
    and ends the run, its step not called again."""
    counts = HoldsWrites(redis_client, hold_on=1)
    quick = GuardSettings(timeout_s=0.5)
    h = await make_harness(_rule(HoldsWrites.name), quick, extra_actions=[counts], dry_run=False)
    await h.intake.accept(notification(alert(_labels("web-1"))))
    disposition = await pass_writes_held(h)
    assert not disposition.is_done
    assert "target lock could not be given back" in (disposition.error or "")
    (run,) = await h.runs()
    assert run.outcome is RunOutcome.RUNNING
    assert await lock_holder(h) == run.id

    await h.drain()
    ended = await h.store.get_run(run.id)
    assert ended is not None
    assert ended.outcome is RunOutcome.SUCCEEDED, (ended.outcome, ended.error)
    assert [s.outcome for s in ended.steps] == ["ok"]
    assert counts.calls == 1
    await h.deliver(_labels("web-2"))
    (second,) = [r for r in await h.runs() if r.id != run.id]
    assert second.outcome is RunOutcome.SUCCEEDED, (second.outcome, second.error)
    assert counts.calls == 2
