"""Approvals through the pipeline: a risky step asks, binds its preview and notifies; approved it
runs once (however many approve at once) and the decision is audited; rejected, expired or its alert
resolved, the run ends so and the step never runs; only approvers decide. Real PostgreSQL and Redis,
with a real HTTP peer: the step is a counter on a local server (``tests.support.approvals``), so "it
ran once" is counted there."""

from __future__ import annotations

import asyncio

import pytest

from receiver.approvals.state import (
    AlertResolved,
    AlreadyDecided,
    ApprovalExpired,
    Decision,
    NotAllowed,
)
from receiver.model import ApprovalState, RunOutcome
from tests.support.approval_deciders import ALICE, API, BOB, CAROL
from tests.support.approvals import MakeApprovalEnv, poke_labels
from tests.support.payloads import alert, notification


async def test_a_risky_step_asks_binds_its_preview_and_notifies(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    env.peer.value = 7
    run, approval = await env.pending_run()

    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    assert [(s.action, s.outcome) for s in run.steps] == [("test.poke", "awaiting_approval")]
    assert approval.state is ApprovalState.PENDING
    assert approval.plan["preconditions"] == {"value": 7}
    assert approval.plan["before"] == {"value": 7}
    assert approval.plan["after"] == {"value": 8}
    assert approval.context["alertname"] == "Poke"
    assert (approval.expires_at - approval.requested_at).total_seconds() == pytest.approx(1800)
    assert env.peer.pokes == 0
    assert env.peer.kinds() == ["approval.requested"]
    link = env.peer.notices[0]["link"]
    assert link.startswith("http://remediator.test/approve/k1.")
    # A wakeup before any decision changes nothing and asks nobody again.
    await env.harness.store.enqueue_job("resume_run", run.id)
    await env.harness.drain()
    assert env.peer.kinds() == ["approval.requested"]
    assert (await env.desk.store.latest_approval(run.id, 0)) == approval


async def test_approved_step_runs_once_and_the_decision_is_audited(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    decided = await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API, reason="go")
    assert (decided.state, decided.decided_by, decided.channel) == (
        ApprovalState.APPROVED,
        "alice",
        "api",
    )
    await env.harness.drain()

    assert env.peer.pokes == 1
    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED
    # Taken up by a job after the decision, the step still sees the alert behind its run.
    assert [(s.outcome, s.before, s.message) for s in done.steps] == [
        ("ok", {"value": 0}, "poked for 'api'")
    ]
    audit = await env.harness.store.audit_entries(run.id)
    decision = next(e for e in audit if e["kind"] == "approval.approved")
    assert decision["data"] | {"at": None} == {
        "approval_id": approval.id,
        "step": 0,
        "action": "test.poke",
        "state": "approved",
        "plan_hash": approval.plan_hash,
        "by": "alice",
        "at": None,
        "channel": "api",
        "source_ip": "10.1.1.1",
        "user_agent": "pytest",
        "reason": "go",
    }
    assert (await env.harness.store.verify_audit()).ok
    # Replayed: the approval was used.
    with pytest.raises(AlreadyDecided, match="already approved by alice"):
        await env.desk.decide(approval.id, Decision.APPROVE, BOB, API)


async def test_ten_concurrent_approvals_run_the_step_once(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    who = [ALICE, BOB] * 5
    results = await asyncio.gather(
        *(env.desk.decide(approval.id, Decision.APPROVE, w, API) for w in who),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, AlreadyDecided) for r in results if isinstance(r, BaseException))
    await env.harness.drain()
    assert env.peer.pokes == 1
    audit = await env.harness.store.audit_entries(run.id)
    assert [e["kind"] for e in audit].count("approval.approved") == 1


async def test_not_an_approver_may_neither_approve_nor_reject(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    _, approval = await env.pending_run()
    for decision in Decision:
        with pytest.raises(NotAllowed):
            await env.desk.decide(approval.id, decision, CAROL, API)
    assert (await env.desk.store.get_approval(approval.id)) == approval


async def test_rejected_step_ends_the_run_rejected_with_who_and_why(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    _run, approval = await env.pending_run()
    await env.desk.decide(approval.id, Decision.REJECT, BOB, API, reason="deploy is fine")
    await env.harness.drain()
    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.REJECTED
    assert done.error == "rejected by bob: deploy is fine"
    assert done.finished_at is not None
    assert [(s.outcome, s.message) for s in done.steps] == [
        ("rejected", "rejected by bob: deploy is fine")
    ]
    assert env.peer.pokes == 0
    assert env.peer.kinds() == ["approval.requested", "approval.rejected"]


async def test_an_undecided_approval_expires_and_says_so(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    # The expiry is the resume job due at expires_at; move both into the past.
    async with env.harness.store._tx() as conn:
        await conn.execute(
            "UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
            approval.id,
        )
        await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    await env.harness.drain()

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.EXPIRED
    assert "expired" in (done.error or "")
    assert [s.outcome for s in done.steps] == ["expired"]
    assert (await env.desk.store.get_approval(approval.id)).state is ApprovalState.EXPIRED  # type: ignore[union-attr]
    assert env.peer.kinds() == ["approval.requested", "approval.expired"]
    with pytest.raises(ApprovalExpired):
        await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    assert env.peer.pokes == 0


async def test_the_expiry_job_woken_early_waits(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    async with env.harness.store._tx() as conn:
        await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    await env.harness.drain()
    assert (await env.harness.only_run()).outcome is RunOutcome.AWAITING_APPROVAL
    assert (await env.desk.store.get_approval(approval.id)).state is ApprovalState.PENDING  # type: ignore[union-attr]
    due = await env.harness.store.next_job_due()
    assert due is not None
    assert abs((due - approval.expires_at).total_seconds()) < 1


async def test_a_resolved_alert_cancels_and_approving_after_is_refused(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    _run, approval = await env.pending_run()
    # Stored but not yet taken up by the worker: already too late to approve.
    await env.harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
    with pytest.raises(AlertResolved):
        await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.CANCELLED
    assert done.resolved_at is not None
    assert (await env.desk.store.get_approval(approval.id)).state is ApprovalState.CANCELLED  # type: ignore[union-attr]
    assert env.peer.kinds() == ["approval.requested", "approval.cancelled"]
    with pytest.raises(AlertResolved):
        await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    assert env.peer.pokes == 0
