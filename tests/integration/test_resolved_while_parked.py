"""A run parked with its step approved (the approval's job not yet come, the target lock held,
its worker stopped) whose alert resolves meanwhile ends ``cancelled``: it never stays open.

The resolution's own pass closes the run, cancels only approvals still pending, and ends only
a run never admitted; the ``resume_run`` job that then took the run up said "nothing to
resume", its alert having resolved. Before, such a run stayed ``awaiting_approval`` (or
``running``) for good, its approval ``approved``; one pending again for the target lock was
cancelled by the resolution but kept its approval ``approved`` and nobody was told. Now the
run ends ``cancelled``, its held step ``not_run`` naming who approved it, its approval
``cancelled`` (who approved kept), audited and announced, its unused budget slot given back.
A run ended while it waited for its approval (resolved, or rejected) leaves no job pending.
Runs whose worker died with no approval pending: test_resolved_after_worker_died.py.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): every poke and
every notice is counted by the peer.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import BaseModel

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.guards.policy import AdmissionRequest, GuardSettings
from receiver.model import ApprovalRecord, ApprovalState, GuardSpec, RunOutcome
from receiver.store import RunRecord
from remediations.base import ActionContext, Change
from remediations.targets import Target
from tests.support.approvals import (
    POKE_RULE_HEAD,
    ApprovalEnv,
    MakeApprovalEnv,
    Peer,
    Poke,
    budget_slots,
    poke_labels,
)
from tests.support.leases import take_over_job
from tests.support.polling import eventually
from tests.support.resolved_runs import WorkerDied, _resolve

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


ALICE = Identity("alice", "operator-token", "alice")


API = Origin(Channel.API, "10.1.1.1", "pytest")


APPROVED_BY_ALICE = "not run: the alert resolved before step 0, approved by alice, ran"


class DyingPoke(Poke):
    """``test.poke`` that draws on the global budget (as a restart does) and whose preview,
    once ``dies`` is set, is where its worker dies."""

    name: ClassVar[str] = "test.dying_poke"
    disruptive: ClassVar[bool] = True

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.dies = False

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        if self.dies:
            raise WorkerDied
        return await super().preview(ctx, target, params)


RULES = POKE_RULE_HEAD + "    steps:\n      - action: test.dying_poke\n"


async def _env(approval_env: MakeApprovalEnv, peer: Peer) -> tuple[ApprovalEnv, DyingPoke]:
    poke = DyingPoke(peer.url)
    env = await approval_env(
        rules=RULES,
        actions=[poke],
        guard_settings=GuardSettings(budget_count=1),
        lock_wait_s=0.2,
    )
    return env, poke


async def _approved(env: ApprovalEnv) -> tuple[RunRecord, ApprovalRecord]:
    run, approval = await env.pending_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    return run, approval


async def _assert_cancelled(
    env: ApprovalEnv, run_id: str, approval_id: str, *, slot_kept: bool = False
) -> None:
    """The run ended cancelled, its approved step not run, its approval cancelled keeping who
    approved it; audited, the approvers told; nothing acted and nothing is left queued. Its
    budget slot given back, or ``slot_kept``: a worker admitted it after its approval and
    left no record of how far it got."""
    run = await env.harness.store.get_run(run_id)
    assert run is not None
    assert run.resolved_at is not None
    assert run.outcome is RunOutcome.CANCELLED, run
    assert run.error == APPROVED_BY_ALICE
    assert run.finished_at is not None
    assert [(s.idx, s.outcome, s.message) for s in run.steps] == [(0, "not_run", APPROVED_BY_ALICE)]
    approval = await env.desk.store.get_approval(approval_id)
    assert approval is not None
    assert approval.state is ApprovalState.CANCELLED
    assert approval.decided_by == "alice"
    assert approval.reason == "the alert resolved before the step ran"
    assert env.peer.kinds() == ["approval.requested", "approval.approved", "approval.cancelled"]
    audit = [(a["kind"], a["data"]) for a in await env.harness.store.audit_entries(run_id)]
    assert ("step", "not_run") in [(k, d.get("outcome")) for k, d in audit]
    assert ("approval.cancelled", "cancelled") in [(k, d.get("state")) for k, d in audit]
    assert audit[-1][0] == "notification.sent"
    assert ("run.outcome", {"outcome": "cancelled", "error": APPROVED_BY_ALICE}) in audit
    assert env.peer.pokes == 0
    # The budget slot it never used, given back; kept when nothing recorded before the step's
    # call says the call was not made (budget.py).
    assert await budget_slots(env) == ([run_id] if slot_kept else [])
    assert await env.harness.store.queue_depth() == 0


async def test_an_approved_run_whose_alert_resolved_before_its_job_came_ends_cancelled(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env, _ = await _env(approval_env, peer)
    run, approval = await _approved(env)
    # The resolution is taken up before the job the approval queued (the events come first).
    await _resolve(env)
    await _assert_cancelled(env, run.id, approval.id)


async def test_an_approved_run_waiting_for_the_target_lock_ends_cancelled_when_it_resolves(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env, _ = await _env(approval_env, peer)
    run, approval = await env.pending_run()
    other = AdmissionRequest(
        "00000000-0000-0000-0000-00000000beef", "other", run.target, False, GuardSpec()
    )
    held = await env.harness.guards.admit(other)
    assert held.admitted
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    assert (await env.harness.only_run()).outcome is RunOutcome.PENDING  # the lock's wait

    # Closed by its resolution, it is left to the job that waits for the lock (due within
    # ``lock_wait_s``): that job owns the run, and ends it before any guard is asked.
    await _resolve(env)

    async def probe() -> RunRecord:
        await env.harness.drain()
        return await env.harness.only_run()

    await eventually(probe, lambda r: r.outcome is not RunOutcome.PENDING)
    await _assert_cancelled(env, run.id, approval.id)
    await env.harness.guards.release(other, held)


async def test_a_run_whose_worker_died_after_its_approval_ends_once_its_alert_resolved(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env, poke = await _env(approval_env, peer)
    run, approval = await _approved(env)
    # Replica B takes the approval's job up, admits the run (running) and dies in the preview.
    poke.dies = True
    (job,) = await env.harness.store.claim_jobs("replica-b", 1, 30.0)
    with pytest.raises(WorkerDied):
        await env.harness.pipeline.run_job(job)
    assert (await env.harness.only_run()).outcome is RunOutcome.RUNNING
    poke.dies = False
    await _resolve(env)
    assert (await env.harness.only_run()).outcome is RunOutcome.RUNNING

    # B's lease runs out: replica C takes the job over.
    taken = await take_over_job(env.harness.store, job.id, "replica-c")
    disposition = await env.harness.pipeline.run_job(taken)
    assert disposition.is_done
    await env.harness.store.complete_job(taken.id, "replica-c", taken.attempts)
    # B died in the preview, before the call; but its admission is the last record, and a
    # death inside the call of a replay-safe step leaves the same: the slot is kept.
    await _assert_cancelled(env, run.id, approval.id, slot_kept=True)


async def test_a_run_with_its_undo_held_for_approval_still_ends_once_its_alert_resolved(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """The run's first step changed something, its second was approved; the alert resolves
    before the approval's job came, and the undo of the first step waits for its own
    approval. The job, woken for both, ends the run; the undo keeps waiting for its approver
    (the resolution is what it is for)."""
    rules = (
        POKE_RULE_HEAD
        + """    steps:
      - action: test.poke
        approval: never
      - action: test.dying_poke
    on_resolved:
      - action: test.poke
        approval: required
"""
    )
    env = await approval_env(rules=rules, actions=[DyingPoke(peer.url)])
    await env.harness.deliver(poke_labels())
    run = await env.harness.only_run()
    assert [s.outcome for s in run.steps] == ["ok", "awaiting_approval"]
    approval = await env.desk.store.latest_approval(run.id, 1)
    assert approval is not None
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await _resolve(env)

    ended = await env.harness.only_run()
    assert ended.outcome is RunOutcome.CANCELLED, ended
    message = "not run: the alert resolved before step 1, approved by alice, ran"
    assert [(s.phase, s.outcome, s.message) for s in ended.steps if s.phase == "run"] == [
        ("run", "ok", "poked for 'api'"),
        ("run", "not_run", message),
    ]
    (undo,) = [s for s in ended.steps if s.phase == "resolve"]
    assert undo.outcome == "awaiting_approval"
    cancelled = await env.desk.store.get_approval(approval.id)
    assert cancelled is not None
    assert cancelled.state is ApprovalState.CANCELLED
    undo_approval = await env.desk.store.latest_approval(run.id, undo.idx)
    assert undo_approval is not None
    assert undo_approval.state is ApprovalState.PENDING
    assert peer.pokes == 1


async def _open_jobs(env: ApprovalEnv, run_id: str) -> list[tuple[str, str]]:
    """The run's jobs not done: (kind, state)."""
    async with env.harness.store._pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT kind, state FROM jobs WHERE run_id = $1::uuid AND state <> 'done' ORDER BY id",
            run_id,
        )
    return [(r["kind"], r["state"]) for r in rows]


async def test_a_run_cancelled_while_it_waited_for_its_approval_leaves_no_job_pending(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # The approval queued a resume_run job due at its expiry (an hour away). The alert
    # resolved first and ended the run cancelled; the job stayed pending until then, counted
    # as unfinished work by the queue's gauges and listings, with nothing left to do.
    env, _ = await _env(approval_env, peer)
    run, approval = await env.pending_run()
    assert await _open_jobs(env, run.id) == [("resume_run", "pending")]
    await _resolve(env)

    ended = await env.harness.store.get_run(run.id)
    assert ended is not None
    assert ended.outcome is RunOutcome.CANCELLED, ended.error
    cancelled = await env.desk.store.get_approval(approval.id)
    assert cancelled is not None
    assert cancelled.state is ApprovalState.CANCELLED
    # Only the safety net of the slot and the notice, both done already (finish.py).
    assert await _open_jobs(env, run.id) == [("finish_end", "pending")]
    assert env.peer.pokes == 0


async def test_a_run_whose_approval_was_rejected_leaves_no_job_pending(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env, _ = await _env(approval_env, peer)
    run, approval = await env.pending_run()
    await env.desk.decide(approval.id, Decision.REJECT, ALICE, API, reason="not now")

    ended = await env.harness.store.get_run(run.id)
    assert ended is not None
    assert ended.outcome is RunOutcome.REJECTED, ended.error
    # Only the safety net of the slot and the notice, both done already (finish.py).
    assert await _open_jobs(env, run.id) == [("finish_end", "pending")]
