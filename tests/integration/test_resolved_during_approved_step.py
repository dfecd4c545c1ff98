"""An alert that resolves while a replica takes its run's approved step up (the step's preview
on its way to the target) is not acted upon: the step does not run once its alert is over.

Two replicas on one store: B claims the ``resume_run`` job an approval wakes and reads the run,
still open; while B's preview of the approved step waits on the target, the alert's resolution
arrives and A closes the run. The run had changed nothing yet, so its resolution planned no
undo. Before, B then ran the step all the same: a change made after the alert was over, which
nothing would ever undo (the on_resolved steps that would have were never planned).
"""

from __future__ import annotations

import asyncio

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalState, RunOutcome
from tests.support.approvals import POKE_RULE_HEAD, MakeApprovalEnv, Peer, SlowPreview, poke_labels
from tests.support.payloads import alert, notification

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")


async def test_an_approved_step_whose_alert_resolved_while_it_was_taken_up_does_not_run(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    slow = SlowPreview(peer.url)
    rules = POKE_RULE_HEAD + "    steps:\n      - action: test.slow_poke\n"
    env = await approval_env(rules=rules, actions=[slow])
    run, approval = await env.pending_run()
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)

    # Replica B takes the approval's wake-up: the run is open; its preview waits on the target.
    slow.hold = asyncio.Event()
    (job,) = await env.harness.store.claim_jobs("replica-b", 1, 30.0)
    taking_up = asyncio.create_task(env.harness.pipeline.run_job(job))
    await asyncio.wait_for(slow.previewing.wait(), 10)
    # Meanwhile the alert resolves, and replica A closes the run.
    await env.harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
    await env.harness.drain()
    closed = await env.harness.store.get_run(run.id)
    assert closed is not None
    assert closed.resolved_at is not None

    slow.hold.set()
    disposition = await asyncio.wait_for(taking_up, 30)
    assert disposition.is_done
    assert peer.pokes == 0, "the step acted after its alert had resolved"
    ended = await env.harness.only_run()
    assert ended.outcome is RunOutcome.CANCELLED, ended
    assert [(s.idx, s.outcome) for s in ended.steps] == [(0, "not_run")], ended.steps
    # Its approval is closed, keeping who gave it, and the approvers are told.
    closed_approval = await env.desk.store.get_approval(approval.id)
    assert closed_approval is not None
    assert closed_approval.state is ApprovalState.CANCELLED
    assert closed_approval.decided_by == "alice"
    assert peer.kinds() == ["approval.requested", "approval.approved", "approval.cancelled"]
