"""A run whose target another run holds waits for the lock instead of being lost, and a run
still waiting when its alert resolves ends without acting. Real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from receiver.guards.policy import Admission, AdmissionRequest
from receiver.model import GuardSpec, RunOutcome
from receiver.store import JobKind
from remediations.targets import Target
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
WEB = Target("Deployment", "shop", "web")


async def _hold_lock(h: Harness, run_id: str) -> tuple[AdmissionRequest, Admission]:
    """Another run on the same Deployment, admitted and acting: it holds the target lock."""
    request = AdmissionRequest(run_id, "other-rule", WEB, disruptive=False, spec=GuardSpec())
    admission = await h.guards.admit(request)
    assert admission.admitted
    return request, admission


async def test_a_locked_target_makes_the_run_wait_then_act(make_harness: MakeHarness) -> None:
    h = await make_harness(RESTART_WEB, lock_wait_s=0.2)
    request, admission = await _hold_lock(h, "00000000-0000-0000-0000-00000000abcd")
    await h.intake.accept(notification(alert(LABELS)))
    await h.drain()

    waiting = await h.only_run()
    assert waiting.outcome is RunOutcome.PENDING  # not refused: it waits
    assert waiting.refusal_guard is None
    audit = await h.store.audit_entries(waiting.id)
    assert any(e["data"].get("waiting_for") == "lock" for e in audit)
    assert await h.store.queue_depth() == 0  # the event is done; a job holds the run

    # The other run finishes; the waiting run's job, due shortly, takes it up and it acts.
    await h.guards.release(request, admission)

    async def acted() -> bool:
        await h.drain()
        return (await h.only_run()).outcome is RunOutcome.DRY_RUN

    await eventually(acted)
    done = await h.only_run()
    assert [(s.action, s.outcome) for s in done.steps] == [
        ("kubernetes.rollout_restart", "dry_run")
    ]


async def test_a_run_still_waiting_when_its_alert_resolves_ends_without_acting(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART_WEB, lock_wait_s=0.2)
    await _hold_lock(h, "00000000-0000-0000-0000-00000000abcd")
    firing = alert(LABELS)
    await h.intake.accept(notification(firing))
    await h.drain()
    assert (await h.only_run()).outcome is RunOutcome.PENDING

    await h.intake.accept(notification(alert(LABELS, status="resolved")))
    await h.drain()
    cancelled = await h.only_run()
    assert cancelled.outcome is RunOutcome.CANCELLED
    assert cancelled.error is not None
    assert "nothing ran" in cancelled.error
    assert [s.outcome for s in cancelled.steps] == ["not_run"]
    assert cancelled.steps[0].message == "not run: the run ended cancelled"

    # Its job, when it comes, leaves it alone.
    await h.store.enqueue_job(JobKind.RESUME_RUN, cancelled.id)
    await h.drain()
    assert (await h.only_run()).outcome is RunOutcome.CANCELLED


@pytest.mark.parametrize("answer", ["admitted", "paused", "locked"])
async def test_a_waiting_run_its_resolution_ended_while_its_job_asked_the_guards_stays_ended(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """The lock's job reads the run still pending and asks the guards; meanwhile another
    worker takes the alert's resolution up and ends the run, never admitted, ``cancelled``.
    Before, the job then wrote over the cancellation whatever the guards said: admitted, the
    run ``running`` and its step acted after the alert was over; refused (a pause), the run
    ``refused``; the lock held again, the run ``pending`` with another job queued. Now each of
    those moves is conditional on the outcome the job took the run up with: the job finds the
    run ended and does nothing (no admission or refusal recorded, no step, no job, the outcome
    kept), and gives back the target lock and the budget slot its guards had just taken."""
    h = await make_harness(RESTART_WEB, lock_wait_s=0.2)
    other, held = await _hold_lock(h, "00000000-0000-0000-0000-00000000abcd")
    await h.intake.accept(notification(alert(LABELS)))
    await h.drain()
    waiting = await h.only_run()
    assert waiting.outcome is RunOutcome.PENDING
    await h.guards.release(other, held)
    # Replica B claims the lock's job when it comes due.
    (job,) = await eventually(
        lambda: h.store.claim_jobs("replica-b", 1, 30.0), lambda jobs: len(jobs) == 1
    )

    admit = h.guards.admit
    resolved: list[bool] = []
    holder: list[tuple[AdmissionRequest, Admission]] = []

    async def resolved_meanwhile(request: AdmissionRequest, **kwargs: Any) -> Admission:
        # While B's guards are asked, replica A takes the alert's resolution up.
        if request.run_id == waiting.id and not resolved:
            resolved.append(True)
            await h.intake.accept(notification(alert(LABELS, status="resolved")))
            await h.drain()
            assert (await h.only_run()).outcome is RunOutcome.CANCELLED
            if answer == "paused":
                await h.guards.pause(None, "change freeze", by="bob")
            elif answer == "locked":
                holder.append(await _hold_lock(h, "00000000-0000-0000-0000-00000000abcf"))
        return await admit(request, **kwargs)

    monkeypatch.setattr(h.guards, "admit", resolved_meanwhile)
    disposition = await h.pipeline.run_job(job)
    assert resolved == [True]
    assert disposition.is_done
    await h.store.complete_job(job.id, "replica-b", job.attempts)
    monkeypatch.undo()
    await h.guards.resume()
    for taken in holder:
        await h.guards.release(*taken)

    ended = await h.only_run()
    assert ended.outcome is RunOutcome.CANCELLED, ended
    assert ended.error == "the alert resolved before the run was admitted; nothing ran"
    assert ended.refusal_guard is None
    assert ended.started_at is None
    assert [s.outcome for s in ended.steps] == ["not_run"]
    audit = await h.store.audit_entries(ended.id)
    kinds = [e["kind"] for e in audit]
    assert "run.admitted" not in kinds
    assert "run.refused" not in kinds
    outcomes = [e["data"].get("outcome") for e in audit if e["kind"] == "run.outcome"]
    assert outcomes[-1] == "cancelled", outcomes
    assert "running" not in outcomes, outcomes
    # What B's guards took is given back: the target is free, the budget slot unused.
    again = await _hold_lock(h, "00000000-0000-0000-0000-00000000abce")
    await h.guards.release(*again)
    assert await h.guards._redis.zrange(h.guards.keys.budget(), 0, -1) == []
    assert await h.store.queue_depth() == 0


async def test_a_job_that_read_a_waiting_run_before_its_resolution_does_not_act_after_it(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order: the lock's job read the run pending before the resolution came; the
    resolution closes the run (``resolved_at``) and reads it still pending; then the job's
    guards answer, and only then the resolution writes ``cancelled``. Before, the job admitted
    the run and its step acted after the alert was over (no undo was planned for it: the
    resolution had seen nothing done), and the resolution's write then ended the run
    ``cancelled`` over what the job recorded, a step done under a run that says nothing ran.
    Now the admission is recorded only while the alert has not resolved (``RESOLVED_SQL``):
    the job ends the run ``cancelled`` itself, nothing acts; and the resolution ends only a
    run still pending, so it writes nothing more."""
    h = await make_harness(RESTART_WEB, lock_wait_s=0.2)
    other, held = await _hold_lock(h, "00000000-0000-0000-0000-00000000abcd")
    await h.intake.accept(notification(alert(LABELS)))
    await h.drain()
    waiting = await h.only_run()
    assert waiting.outcome is RunOutcome.PENDING
    await h.guards.release(other, held)
    (job,) = await eventually(
        lambda: h.store.claim_jobs("replica-b", 1, 30.0), lambda jobs: len(jobs) == 1
    )

    # Replica B's job has read the run and is asking the guards when the resolution comes.
    admit, set_run_outcome = h.guards.admit, h.store.set_run_outcome
    asking, go = asyncio.Event(), asyncio.Event()

    async def held_at_the_guards(request: AdmissionRequest, **kwargs: Any) -> Admission:
        if request.run_id == waiting.id and not go.is_set():
            asking.set()
            await go.wait()
        return await admit(request, **kwargs)

    monkeypatch.setattr(h.guards, "admit", held_at_the_guards)
    taking_up = asyncio.create_task(h.pipeline.run_job(job))
    await asyncio.wait_for(asking.wait(), 10)

    async def job_first(run_id: str, outcome: RunOutcome, **kwargs: Any) -> bool:
        # Replica A read the run pending; before its write, B's job goes on and finishes.
        if run_id == waiting.id and outcome is RunOutcome.CANCELLED and not go.is_set():
            go.set()
            assert (await asyncio.wait_for(taking_up, 30)).is_done
        return await set_run_outcome(run_id, outcome, **kwargs)

    monkeypatch.setattr(h.store, "set_run_outcome", job_first)
    await h.intake.accept(notification(alert(LABELS, status="resolved")))
    await h.drain()
    assert go.is_set()
    await h.store.complete_job(job.id, "replica-b", job.attempts)

    run = await h.only_run()
    assert run.outcome is RunOutcome.CANCELLED, run
    assert run.resolved_at is not None
    assert run.started_at is None
    assert [s.outcome for s in run.steps] == ["not_run"]
    audit = await h.store.audit_entries(run.id)
    assert "run.admitted" not in [e["kind"] for e in audit]
    outcomes = [e["data"].get("outcome") for e in audit if e["kind"] == "run.outcome"]
    assert outcomes == ["pending", "cancelled"], outcomes
    again = await _hold_lock(h, "00000000-0000-0000-0000-00000000abce")
    await h.guards.release(*again)
