"""An escalation step approved while its alert fired does not run once that alert resolved:
the ladder exists because the run's fix did not work while the alert fired; after the alert
is over, a step that acts would change something nothing takes back (the run's on_resolved
steps were planned at the resolution). Its notify steps still tell people of the failure.

Two replicas on one store, as in test_resolved_during_approved_step: B claims the
``resume_run`` job the approval wakes and reads the run; while B's preview of the approved
step waits on the target, the alert's resolution arrives and A takes it up. Before, B then ran
the approved step, and the ladder's later steps after it. The alert that matters is the one
the run escalated on: its own occurrence when it did not resolve in time, the re-fire when it
recurred (that re-fire's resolution, not the run's earlier one). A re-fire that opens a new
occurrence after the resolution has a run of its own: the old ladder stays over.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): every poke is
counted by the peer, which also takes the notifications.
"""

from __future__ import annotations

import asyncio

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalState, RunOutcome, VerifyResult
from receiver.store import OVERTAKEN_AUDIT, RunRecord
from tests.support.approvals import (
    POKE_RULE_HEAD,
    ApprovalEnv,
    MakeApprovalEnv,
    Peer,
    SlowPreview,
    poke_labels,
)
from tests.support.payloads import alert, notification
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")

# The ladder: the approved step, a message, and a step that acts without an approval.
LADDER = (
    POKE_RULE_HEAD
    + """    steps:
      - action: test.poke
        approval: never
    verify: {resolved_within: 1s}
    on_failed:
      - action: test.slow_poke
        approval: required
      - action: notify
        params: {channel: ops, message: "poking did not help"}
      - action: test.poke
        approval: never
    notify: {channel: ops}
"""
)
RECURRING = LADDER.replace("{resolved_within: 1s}", "{resolved_within: 10m, settle: 30m}")
# The re-fire's resolution: a later endsAt than the first (the same would be a copy of it).
LATER_END = "2026-11-25T10:20:00Z"


def ladder(run: RunRecord) -> list[tuple[str, str]]:
    return [(s.action, s.outcome) for s in run.steps if s.phase == "on_failed"]


def messages(peer: Peer) -> list[str]:
    """The texts the ladder's notify steps sent (announcements and approval notices left out)."""
    return [str(n) for n in peer.notices if "poking did not help" in str(n)]


async def take_up_then_resolve(
    env: ApprovalEnv, slow: SlowPreview, run_id: str, *, ends_at: str | None = None
) -> RunRecord:
    """Replica B takes the approval's wake-up and previews the approved step, which waits on
    the target; meanwhile the alert resolves and replica A takes the resolution up. Then B
    goes on. Returns the escalated run as it ends."""
    slow.hold = asyncio.Event()
    (job,) = await env.harness.store.claim_jobs("replica-b", 1, 30.0)
    taking_up = asyncio.create_task(env.harness.pipeline.run_job(job))
    await asyncio.wait_for(slow.previewing.wait(), 10)
    resolved = alert(poke_labels(), status="resolved", ends_at=ends_at)
    await env.harness.intake.accept(notification(resolved))
    await env.harness.drain()
    slow.hold.set()
    disposition = await asyncio.wait_for(taking_up, 30)
    assert disposition.is_done
    run = await env.harness.store.get_run(run_id)
    assert run is not None
    return run


async def assert_overtaken(env: ApprovalEnv, run: RunRecord, approval_id: str) -> None:
    """The approved step and the step that acts did not run; the message did; the approval
    is closed, keeping who gave it; the audit log says why."""
    assert ladder(run) == [
        ("test.slow_poke", "not_run"),
        ("notify", "ok"),
        ("test.poke", "not_run"),
    ], run.steps
    held = next(s for s in run.steps if s.action == "test.slow_poke")
    assert held.message == (
        "not run: the alert resolved before this escalation step, approved by alice, ran"
    )
    approval = await env.desk.store.get_approval(approval_id)
    assert approval is not None
    assert approval.state is ApprovalState.CANCELLED
    assert approval.decided_by == "alice"
    assert approval.reason == "the alert resolved before the escalation step ran"
    assert "approval.cancelled" in env.peer.kinds()
    audit = await env.harness.store.audit_entries(run.id)
    kinds = [a["kind"] for a in audit]
    assert "approval.cancelled" in kinds
    overtaken = next(a for a in audit if a["kind"] == OVERTAKEN_AUDIT)
    acting = [s.idx for s in run.steps if s.phase == "on_failed" and s.action != "notify"]
    assert overtaken["data"] == {"why": "the alert resolved", "ended": acting}
    assert len(messages(env.peer)) == 1


async def test_an_approved_ladder_step_whose_alert_resolved_while_it_was_taken_up_does_not_run(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    slow = SlowPreview(peer.url)
    env = await approval_env(rules=LADDER, actions=[slow])
    run, approval = await env.escalated()
    assert peer.pokes == 1  # the run's own step
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)

    ended = await take_up_then_resolve(env, slow, run.id)
    assert ended.resolved_at is not None
    assert peer.pokes == 1, "the ladder acted after its alert had resolved"
    # The verification's verdict stands: the run failed; its ladder is over.
    assert (ended.outcome, ended.verify_result) == (RunOutcome.FAILED, VerifyResult.NOT_RESOLVED)
    await assert_overtaken(env, ended, approval.id)


async def test_after_a_recurrence_the_re_fires_resolution_ends_the_approved_ladder_step(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    slow = SlowPreview(peer.url)
    env = await approval_env(rules=RECURRING, actions=[slow])
    env.harness.store.late_delivery_window_s = 0.0  # a re-fire is a new occurrence at once
    await env.harness.deliver(poke_labels())
    await env.harness.deliver(poke_labels(), status="resolved")
    await env.harness.deliver(poke_labels())  # fired again: the first run recurred
    first = next(r for r in await env.harness.runs() if r.refire == 0)
    run = await env.harness.store.get_run(first.id)
    assert run is not None
    assert run.verify_result is VerifyResult.RECURRED
    held = next(s for s in run.steps if s.phase == "on_failed")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    # Approved while the re-fire fires (the run's own resolution, long before, is not it).
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    assert peer.pokes == 2  # each occurrence's own step

    ended = await take_up_then_resolve(env, slow, run.id, ends_at=LATER_END)
    assert peer.pokes == 2, "the ladder acted after the re-fire had resolved"
    assert (ended.outcome, ended.verify_result) == (RunOutcome.FAILED, VerifyResult.RECURRED)
    await assert_overtaken(env, ended, approval.id)


async def test_an_approved_ladder_step_taken_up_after_a_resolution_and_a_re_fire_does_not_run(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """The alert resolved and fired again (a new occurrence, with a run of its own) before any
    replica took the approval up: the alert fires, but not the occurrence the ladder is for."""
    env = await approval_env(rules=LADDER, actions=[SlowPreview(peer.url)])
    env.harness.store.late_delivery_window_s = 0.0  # a re-fire is a new occurrence at once
    run, approval = await env.escalated()
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
    await env.harness.intake.accept(notification(alert(poke_labels())))
    await env.harness.drain()

    runs = await env.harness.runs()
    assert sorted(r.refire for r in runs) == [0, 1]
    refired = next(r for r in runs if r.refire == 1)
    assert refired.id != run.id
    ended = await env.harness.store.get_run(run.id)
    assert ended is not None
    # The run's own step and the new occurrence's own step; not the old ladder's.
    assert peer.pokes == 2, "the old occurrence's ladder acted during the new one"
    await assert_overtaken(env, ended, approval.id)


async def test_an_approved_undo_step_still_runs_after_its_alert_resolved(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """An on_resolved step runs because the alert resolved: the resolution never ends it, even
    for a run whose ladder it ended (the same run failed, escalated and resolved)."""
    slow = SlowPreview(peer.url)
    rules = LADDER.replace(
        "    notify: {channel: ops}\n",
        "    on_resolved:\n      - action: test.slow_poke\n        approval: required\n"
        "    notify: {channel: ops}\n",
    )
    env = await approval_env(rules=rules, actions=[slow])
    run, ladder_approval = await env.escalated()
    await env.harness.deliver(poke_labels(), status="resolved")
    closed = await env.harness.store.get_run(run.id)
    assert closed is not None
    assert closed.resolved_at is not None
    undo = next(s for s in closed.steps if s.phase == "resolve")
    assert undo.outcome == "awaiting_approval"
    undo_approval = await env.desk.store.latest_approval(run.id, undo.idx)
    assert undo_approval is not None
    await env.desk.decide(undo_approval.id, Decision.APPROVE, ALICE, API)

    # Taken up by a replica after the resolution, looked at after its preview as any
    # approved step is: it runs.
    slow.hold = asyncio.Event()
    slow.hold.set()
    await env.harness.drain()
    assert slow.previewing.is_set()
    ended = await env.harness.store.get_run(run.id)
    assert ended is not None
    assert [s.outcome for s in ended.steps if s.phase == "resolve"] == ["ok"], ended.steps
    assert peer.pokes == 2  # the run's own step and its undo
    approval = await env.desk.store.get_approval(undo_approval.id)
    assert approval is not None
    assert approval.state is ApprovalState.APPROVED
    # The ladder's own approval, pending at the resolution, was cancelled by it.
    ladder_state = await env.desk.store.get_approval(ladder_approval.id)
    assert ladder_state is not None
    assert ladder_state.state is ApprovalState.CANCELLED
    assert ladder(ended)[0] == ("test.slow_poke", "cancelled")


async def test_after_a_recurrence_a_pending_ladder_approval_is_cancelled_once_the_re_fire_resolved(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """The re-fire's resolution closes the re-fire's own run; the ladder's approval, still
    pending, is ended by its expiry job, which finds the alert resolved: cancelled, its
    acting step not run, its message sent."""
    env = await approval_env(rules=RECURRING, actions=[SlowPreview(peer.url)], ttl_s=1.0)
    env.harness.store.late_delivery_window_s = 0.0  # a re-fire is a new occurrence at once
    await env.harness.deliver(poke_labels())
    await env.harness.deliver(poke_labels(), status="resolved")
    await env.harness.deliver(poke_labels())  # fired again: the first run recurred
    first = next(r for r in await env.harness.runs() if r.refire == 0)
    await env.harness.intake.accept(
        notification(alert(poke_labels(), status="resolved", ends_at=LATER_END))
    )

    async def probe() -> RunRecord:
        await env.harness.drain()
        run = await env.harness.store.get_run(first.id)
        assert run is not None
        return run

    run = await eventually(probe, lambda r: ladder(r)[0][1] != "awaiting_approval")
    assert ladder(run) == [
        ("test.slow_poke", "cancelled"),
        ("notify", "ok"),
        ("test.poke", "not_run"),
    ], run.steps
    approval = await env.desk.store.latest_approval(run.id, run.steps[1].idx)
    assert approval is not None
    assert approval.state is ApprovalState.CANCELLED
    assert peer.pokes == 2  # each occurrence's own step


async def test_a_resolution_that_cancels_the_ladders_pending_approval_takes_the_ladder_up_again(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """The run's own resolution arrives while the ladder's first step waits for its approval:
    the approval is cancelled, and the ladder is taken up again at once (a ``resume_run`` job
    queued with the cancellation), so the step after it that acts is ended and the message
    after it is sent. Before, nothing took the ladder up: both stayed ``pending`` for good."""
    env = await approval_env(rules=LADDER, actions=[SlowPreview(peer.url)])
    run, approval = await env.escalated()
    await env.harness.deliver(poke_labels(), status="resolved")

    ended = await env.harness.store.get_run(run.id)
    assert ended is not None
    assert ended.resolved_at is not None
    assert ladder(ended) == [
        ("test.slow_poke", "cancelled"),
        ("notify", "ok"),
        ("test.poke", "not_run"),
    ], ended.steps
    assert (ended.outcome, ended.verify_result) == (RunOutcome.FAILED, VerifyResult.NOT_RESOLVED)
    assert peer.pokes == 1  # the run's own step only
    assert len(messages(peer)) == 1
    cancelled = await env.desk.store.get_approval(approval.id)
    assert cancelled is not None
    assert cancelled.state is ApprovalState.CANCELLED
    audit = await env.harness.store.audit_entries(run.id)
    overtaken = next(a for a in audit if a["kind"] == OVERTAKEN_AUDIT)
    acting = next(s.idx for s in ended.steps if s.action == "test.poke" and s.phase == "on_failed")
    assert overtaken["data"] == {"why": "the alert resolved", "ended": [acting]}
    assert await env.harness.store.queue_depth() == 0


@pytest.mark.parametrize("decided", ["rejected", "expired"])
async def test_a_rejected_or_expired_ladder_step_ends_the_ladder(
    approval_env: MakeApprovalEnv, peer: Peer, decided: str
) -> None:
    """Nobody said yes to the ladder's step: the ladder stops there, its later steps (the
    message and the step that acts) ``not_run``, audited. Before, they stayed ``pending`` for
    good, with no job to take them up."""
    env = await approval_env(
        rules=LADDER, actions=[SlowPreview(peer.url)], ttl_s=1.0 if decided == "expired" else 1800
    )
    run, approval = await env.escalated()
    if decided == "rejected":
        await env.desk.decide(approval.id, Decision.REJECT, ALICE, API)

    async def probe() -> RunRecord:
        await env.harness.drain()
        found = await env.harness.store.get_run(run.id)
        assert found is not None
        return found

    ended = await eventually(probe, lambda r: ladder(r)[0][1] == decided)
    assert ladder(ended) == [
        ("test.slow_poke", decided),
        ("notify", "not_run"),
        ("test.poke", "not_run"),
    ], ended.steps
    assert all("was not approved" in s.message for s in ended.steps[2:]), ended.steps
    assert (ended.outcome, ended.verify_result) == (RunOutcome.FAILED, VerifyResult.NOT_RESOLVED)
    assert peer.pokes == 1
    assert messages(peer) == []
    assert await env.harness.store.queue_depth() == 0
    audit = await env.harness.store.audit_entries(run.id)
    assert sum(1 for a in audit if a["kind"] == "step" and a["data"]["outcome"] == "not_run") == 2
