"""A run whose worker died holding the target lock, then ended by a pass that did not take it.

Found with two replicas, SIGKILLs and Redis restarts: run d8ffd250's worker was killed in its
step, holding the target lock; its alert then resolved, and another replica's job ended the
run ``cancelled`` ("run ended: its alert resolved before its steps left ran") without the
lock, which ten later runs on the Deployment waited out (``guards.lock_ttl``). The pass that
ends the run now releases the lock its last admission took, by that exact token (recorded
with the admission), and nothing else: not a lock its on_resolved steps took under the same
run id. Real PostgreSQL and Redis; the death is a BaseException nothing in the pipeline
catches, raised inside the step.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import BaseModel

from receiver.guards.policy import AdmissionRequest
from receiver.model import GuardSpec, RunOutcome
from receiver.pipeline.context import RESOLVE_GUARDS
from receiver.store import EventLease, JobKind
from remediations.base import ActionContext, Result
from remediations.targets import Target
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.rules import Restart
from tests.support.target_locks import lock_holder

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class WorkerDied(BaseException):
    """What the process's death looks like from inside: nothing catches it."""


class Dies(Restart):
    """A step whose worker is killed while it acts (holding the target lock)."""

    name: ClassVar[str] = "test.dies"

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        raise WorkerDied("worker-a was killed mid-step")


RULE = f"""
rules:
  - name: dies
    match: ['alertname="HighMemoryUsage"']
    target: {{kind: Deployment, namespace: shop, name: web}}
    steps:
      - action: {Dies.name}
"""


def _labels(pod: str) -> dict[str, str]:
    # Alerts of several pods of one Deployment: their runs act on one target.
    return {"alertname": "HighMemoryUsage", "namespace": "shop", "pod": pod}


async def _killed_mid_step(h: Harness, monkeypatch: pytest.MonkeyPatch) -> str:
    """Worker A takes up the first alert's event and dies in its run's step, holding the
    target lock (the release its cleanup would send never reaches Redis); the run's id."""
    await h.intake.accept(notification(alert(_labels("web-1"))))
    (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)

    async def dead(*args: object, **kwargs: object) -> bool:
        raise WorkerDied("a dead worker's call never reaches Redis")

    monkeypatch.setattr(h.guards, "release", dead)
    with pytest.raises(WorkerDied):
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts))
    monkeypatch.undo()
    (run,) = await h.runs()
    assert run.outcome is RunOutcome.RUNNING
    return run.id


async def test_a_run_ended_by_its_resolution_after_its_worker_died_frees_the_target(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alert resolves (stored, not yet taken up); a job takes the run up and ends it
    ``cancelled``. Before, the dead worker's lock stayed, and the next run on the
    Deployment waited (``pending``, "target is locked by run <the first>")."""
    h = await make_harness(RULE, extra_actions=[Dies()], dry_run=False)
    first = await _killed_mid_step(h, monkeypatch)
    assert await lock_holder(h) == first

    await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))
    await h.store.enqueue_job(JobKind.RESUME_RUN, first, delay_s=0)
    (job,) = await h.store.claim_jobs("worker-b", 1, 30.0)
    assert (await h.pipeline.run_job(job)).is_done
    ended = await h.store.get_run(first)
    assert ended is not None
    assert ended.outcome is RunOutcome.CANCELLED, (ended.outcome, ended.error)
    assert await lock_holder(h) is None

    await h.intake.accept(notification(alert(_labels("web-2"))))
    (claimed,) = await h.store.claim_events("worker-b", 1, 30.0)
    with pytest.raises(WorkerDied):  # admitted: its step ran
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-b", claimed.attempts))
    (second,) = [r for r in await h.runs() if r.id != first]
    assert second.outcome is RunOutcome.RUNNING, (second.outcome, second.error)


async def test_a_run_refused_as_it_is_taken_up_after_its_worker_died_frees_the_target(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator pauses automation; the job that takes the run up is refused by the pause
    and ends it ``refused`` (a refusal takes no lock). Before, the dead worker's lock stayed
    until its TTL, past the end of the pause."""
    h = await make_harness(RULE, extra_actions=[Dies()], dry_run=False)
    first = await _killed_mid_step(h, monkeypatch)
    await h.guards.pause(None, "maintenance", by="alice")
    await h.store.enqueue_job(JobKind.RESUME_RUN, first, delay_s=0)
    (job,) = await h.store.claim_jobs("worker-b", 1, 30.0)
    await h.pipeline.run_job(job)
    ended = await h.store.get_run(first)
    assert ended is not None
    assert (ended.outcome, ended.refusal_guard) == (RunOutcome.REFUSED, "pause")
    assert await lock_holder(h) is None


async def test_the_lock_of_the_runs_on_resolved_steps_is_left_to_them(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's follow-up (its on_resolved steps) was admitted under the same run id after
    the worker died, its own token over the dead one's: the pass that ends the run leaves
    that lock, which a release of "any lock of this run" would have freed while those steps
    act."""
    h = await make_harness(RULE, extra_actions=[Dies()], dry_run=False)
    first = await _killed_mid_step(h, monkeypatch)
    run = await h.store.get_run(first)
    assert run is not None
    follow_up = await h.guards.admit(
        AdmissionRequest(first, run.rule, run.target, False, GuardSpec()), only=RESOLVE_GUARDS
    )
    assert follow_up.admitted
    assert follow_up.lock_token is not None

    await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))
    await h.store.enqueue_job(JobKind.RESUME_RUN, first, delay_s=0)
    (job,) = await h.store.claim_jobs("worker-b", 1, 30.0)
    await h.pipeline.run_job(job)
    ended = await h.store.get_run(first)
    assert ended is not None
    assert ended.outcome is RunOutcome.CANCELLED
    keys = [key async for key in h.guards.redis.scan_iter(match="*lock:*")]
    assert len(keys) == 1
    held = await h.guards.redis.get(keys[0])
    assert isinstance(held, bytes)
    assert held.endswith(follow_up.lock_token.encode())
