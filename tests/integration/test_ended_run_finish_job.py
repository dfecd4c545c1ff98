"""What follows the end of a run or its approval survives the pass that ended it
(receiver/store/finish.py, pipeline/finish_end.py).

An approval that expired, a run its alert's resolution overtook: the pass that wrote the end
gave the unused budget slot back, told the approvers and released the target lock after its
commit, and nothing else did. Redis holding its writes, the approvers' channel answering 503,
or the process dying in between lost it: the slot stayed spent for the budget's window, the
approval message said "waiting" for good, the lock held the target until its TTL. Now the end's
transaction queues a ``finish_end`` job that does what the pass could not. And a channel that
refuses a notice (4xx) fails the job, counted, until it is dead and listed, instead of a wait
retried for good. Real PostgreSQL, Redis (``CLIENT PAUSE WRITE``), the pipeline's worker
passes, and a local HTTP server as the approvers' channel (``peer``).
"""

from __future__ import annotations

from typing import Any

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.guards.policy import Admission, AdmissionRequest, GuardSettings
from receiver.model import RunOutcome
from receiver.store import JobKind, RunRecord, Store
from remediations.targets import Target
from tests.integration.test_approval_budget import RULES
from tests.integration.test_dead_worker_lock import RULE, Dies, WorkerDied, _killed_mid_step
from tests.integration.test_dropped_resume_jobs import open_job
from tests.integration.test_run_end_crash import Counts, _labels, _rule
from tests.integration.test_unrecorded_admission_lock import _admitted_unrecorded
from tests.support.approvals import (
    ApprovalEnv,
    DisruptivePoke,
    MakeApprovalEnv,
    Peer,
    budget_slots,
    poke_labels,
)
from tests.support.leases import take_over_job
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.polling import eventually
from tests.support.target_locks import lock_holder, taken_up_after_the_lock, writes_held

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# The kind as the store names it (a literal: the tests also run against the code before it).
FINISH = "finish_end"
WEB = Target("Deployment", "shop", "web")
ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")


async def _parked(approval_env: MakeApprovalEnv, peer: Peer) -> tuple[ApprovalEnv, RunRecord]:
    """A disruptive run parked at its approval, its admission holding the budget's one slot;
    a held Redis call gives up after half a second."""
    env = await approval_env(
        rules=RULES,
        actions=[DisruptivePoke(peer.url)],
        guard_settings=GuardSettings(budget_count=1, timeout_s=0.5),
    )
    await env.harness.deliver(poke_labels("api"))
    [run] = await env.harness.runs()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    assert await budget_slots(env) == [run.id]
    return env, run


async def _finish_due_now(store: Store, run_id: str) -> None:
    """Make the run's pending ``finish_end`` job due now (it waits for the pass's own try)."""
    async with store._pool.acquire() as conn:
        await conn.execute(
            "UPDATE jobs SET not_before = remediator_now()"
            " WHERE run_id = $1::uuid AND kind = $2 AND state = 'pending'",
            run_id,
            FINISH,
        )


def _notices(peer: Peer, kind: str) -> list[dict[str, Any]]:
    return [n for n in peer.notices if n.get("kind") == f"approval.{kind}"]


async def test_an_expiry_whose_pass_met_redis_and_the_channel_down_is_finished_by_its_job(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env, run = await _parked(approval_env, peer)
    async with env.harness.store._tx() as conn:
        await conn.execute(
            "UPDATE approvals SET expires_at = now() - interval '1 second' WHERE run_id = $1::uuid",
            run.id,
        )
        await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    peer.notify_status = 503
    async with writes_held(env.harness.guards.redis):
        await env.harness.drain()  # the resume_run job expires the approval
    expired = await env.harness.store.get_run(run.id)
    assert expired is not None
    assert expired.outcome is RunOutcome.EXPIRED
    assert await budget_slots(env) == [run.id]  # the pass's refund was held
    assert _notices(peer, "expired") == []

    peer.notify_status = 200
    await _finish_due_now(env.harness.store, run.id)
    await env.harness.drain()

    assert await budget_slots(env) == []
    [notice] = _notices(peer, "expired")
    assert notice["approval"]["run_id"] == run.id


async def test_a_rejection_whose_channel_was_down_is_told_by_its_job(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env, run = await _parked(approval_env, peer)
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None
    peer.notify_status = 503
    await env.desk.decide(approval.id, Decision.REJECT, ALICE, API, reason="not now")
    assert _notices(peer, "rejected") == []

    peer.notify_status = 200
    await _finish_due_now(env.harness.store, run.id)
    await env.harness.drain()

    [notice] = _notices(peer, "rejected")
    assert notice["approval"]["id"] == approval.id
    assert await budget_slots(env) == []


async def test_a_run_overtaken_while_redis_and_the_channel_were_down_is_finished_by_its_job(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """Approved, then its alert resolved before its job took it up: the job ends it
    (``run_overtaken``), its approval cancelled, with Redis holding writes and the channel
    answering 503. Before, the slot stayed spent and the cancelled notice was never sent."""
    env, run = await _parked(approval_env, peer)
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    labels = poke_labels("api")
    await env.harness.intake.accept(notification(alert(labels, status="resolved")))
    peer.notify_status = 503
    async with writes_held(env.harness.guards.redis):
        await env.harness.drain()
    ended = await env.harness.store.get_run(run.id)
    assert ended is not None
    assert ended.outcome is RunOutcome.CANCELLED, ended.error
    assert peer.value == 0
    assert await budget_slots(env) == [run.id]
    assert _notices(peer, "cancelled") == []

    peer.notify_status = 200
    await _finish_due_now(env.harness.store, run.id)
    await env.harness.drain()

    assert await budget_slots(env) == []
    [notice] = _notices(peer, "cancelled")
    assert notice["approval"]["id"] == approval.id


async def test_an_approval_a_pause_cancelled_while_the_channel_was_down_is_told_by_its_job(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """Approved, then refused by a pause as its job took it up: the approval is cancelled
    with the run (``Store.record_refusal``), and the channel answers 503. Before, the
    approvers were never told; the message said "approved" of a step that never ran."""
    env = await approval_env()
    run, approval = await env.pending_run()
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.guards.pause(None, "change freeze", by="bob")
    peer.notify_status = 503
    await env.harness.drain()
    ended = await env.harness.store.get_run(run.id)
    assert ended is not None
    assert ended.outcome is RunOutcome.REFUSED, ended
    assert _notices(peer, "cancelled") == []

    peer.notify_status = 200
    await _finish_due_now(env.harness.store, run.id)
    await env.harness.drain()

    [notice] = _notices(peer, "cancelled")
    assert notice["approval"]["id"] == approval.id
    assert peer.pokes == 0


async def test_a_run_overtaken_whose_pass_died_after_the_commit_frees_the_target(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker died holding the target lock; the alert resolved, and the pass that ended
    the run died right after its commit (the store's end alone), before its release of the
    lock the run's admission took. Before, the lock held the target until its TTL."""
    h = await make_harness(RULE, extra_actions=[Dies()], dry_run=False)
    first = await _killed_mid_step(h, monkeypatch)
    token = await h.store.admitted_lock(first)
    assert token
    assert await lock_holder(h) == first
    await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))

    assert await h.store.end_resolved_run(first) is not None
    await _finish_due_now(h.store, first)
    (job,) = await h.store.claim_jobs("worker-b", 1, 30.0)
    assert (job.kind, job.payload.get(f"token:{token}")) == (JobKind.FINISH_END, True)
    assert (await h.pipeline.run_job(job)).is_done
    await h.store.complete_job(job.id, "worker-b", job.attempts)

    assert await lock_holder(h) is None


async def test_a_run_never_seen_admitted_closed_by_a_pass_that_died_frees_the_target(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis admitted the run's job and its worker died before the store recorded it; the
    alert's resolution closes the run (``Close``: cancelled, never admitted as the store saw
    it), and that pass dies right after the end's commit, before its release of the lock the
    run holds under a token nobody knows. Before, the lock held the target until its TTL."""
    counts = Counts()
    h = await make_harness(_rule(Counts.name), extra_actions=[counts], dry_run=False)
    first, dead_job = await _admitted_unrecorded(h, monkeypatch)
    await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))

    async def dies(*args: object, **kwargs: object) -> bool:
        raise WorkerDied("the pass died after the run's end committed")

    monkeypatch.setattr(h.guards, "release_run", dies)
    with pytest.raises(WorkerDied):
        await h.drain()
    monkeypatch.undo()
    ended = await h.store.get_run(first)
    assert ended is not None
    assert ended.outcome is RunOutcome.CANCELLED, (ended.outcome, ended.error)
    assert await lock_holder(h) == first

    # The dead worker's job holds the run's queue until its lease runs out; taken over then,
    # it finds the run ended.
    job = await take_over_job(h.store, dead_job, "worker-b")
    assert (await h.pipeline.run_job(job)).is_done
    await h.store.complete_job(job.id, "worker-b", job.attempts)
    await _finish_due_now(h.store, first)
    (finish,) = await h.store.claim_jobs("worker-b", 1, 30.0)
    assert (finish.kind, finish.payload.get("held_by_run")) == (JobKind.FINISH_END, True)
    assert (await h.pipeline.run_job(finish)).is_done
    await h.store.complete_job(finish.id, "worker-b", finish.attempts)

    assert await lock_holder(h) is None
    assert counts.calls == 0


async def test_an_admission_that_found_the_run_ended_queues_its_token_with_the_refusal(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run waited for the lock; its job takes it up, Redis admits it just as its alert's
    resolution is stored, and the store does not record the admission (the alert resolved).
    The pass dies before it gives the lock back (``Admit``): only it knew the token. Now the
    store's refusal queues it, for a ``finish_end`` job to give back."""
    counts = Counts()
    h = await make_harness(_rule(Counts.name), extra_actions=[counts], dry_run=False)
    run, job = await taken_up_after_the_lock(h, WEB, _labels("web-1"))
    admitted: list[Admission] = []
    admit = h.guards.admit

    async def admit_then_resolve(req: AdmissionRequest, **kwargs: Any) -> Admission:
        admission = await admit(req, **kwargs)
        admitted.append(admission)
        await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))
        return admission

    async def dies(*args: object, **kwargs: object) -> bool:
        raise WorkerDied("the pass died before it gave the lock back")

    monkeypatch.setattr(h.guards, "admit", admit_then_resolve)
    monkeypatch.setattr(h.guards, "release", dies)
    with pytest.raises(WorkerDied):
        await h.pipeline.run_job(job)
    monkeypatch.undo()
    (admission,) = admitted
    assert await lock_holder(h) == run.id
    [finish] = (await h.store.list_jobs(run_id=run.id, kind=FINISH))[0]
    assert finish["state"] == "pending"
    assert finish["payload"].get(f"token:{admission.lock_token}") is True, finish["payload"]
    assert counts.calls == 0


async def test_a_channel_that_refuses_a_notice_makes_the_job_dead_not_retried_for_good(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """The approvers' channel answers 404 (a wrong URL): the drop's job tells it at every
    attempt. Before, each was a wait, never counted: the job stayed pending for good, its
    error a "not done yet". Now each counts, and ``max_attempts`` make it dead."""
    env, run = await _parked(approval_env, peer)
    store = env.harness.store
    job_id = await open_job(store, run.id, JobKind.RESUME_RUN)
    peer.notify_status = 404
    await store.drop_job(job_id, actor="alice", reason="stale")

    async def finish() -> dict[str, Any]:
        [row] = (await store.list_jobs(run_id=run.id, kind=FINISH))[0]
        return row

    async with env.harness.worker(concurrency=1, poll_interval_s=0.05, max_attempts=1):
        dead = await eventually(finish, lambda row: row["state"] == "dead", what="a dead job")
    assert dead["failures"] == 1
    assert "refused the notice" in dead["last_error"]
    assert "HTTP 404" in dead["last_error"]
    assert await budget_slots(env) == []  # the rest was done before the refusal


async def test_a_refused_notice_does_not_make_the_job_dead_while_redis_work_waits(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """The channel answers 404 while Redis holds its writes: the refusal would count, and at
    ``max_attempts`` the job would die with the budget slot still spent. It waits for Redis
    with the slot instead, uncounted; once the slot is back, the refusal counts."""
    env, run = await _parked(approval_env, peer)
    store = env.harness.store
    job_id = await open_job(store, run.id, JobKind.RESUME_RUN)
    peer.notify_status = 404

    async def finish() -> dict[str, Any]:
        [row] = (await store.list_jobs(run_id=run.id, kind=FINISH))[0]
        return row

    async with writes_held(env.harness.guards.redis):
        await store.drop_job(job_id, actor="alice", reason="stale")
        async with env.harness.worker(concurrency=1, poll_interval_s=0.05, max_attempts=1):
            waiting = await eventually(
                finish,
                lambda row: row["attempts"] >= 1 and row["state"] == "pending",
                what="a tried job",
            )
    assert waiting["failures"] == 0
    assert "the budget slot" in waiting["last_error"]
    assert "refused the notice" in waiting["last_error"]
    assert await budget_slots(env) == [run.id]

    await _finish_due_now(store, run.id)
    async with env.harness.worker(concurrency=1, poll_interval_s=0.05, max_attempts=1):
        dead = await eventually(finish, lambda row: row["state"] == "dead", what="a dead job")
    assert await budget_slots(env) == []
    assert dead["failures"] == 1
