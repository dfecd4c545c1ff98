"""An approved step of a run taken up during a pause: the run is refused, as the pause refuses
every run taken up while it lasts (README, ``PUT /api/v1/pause``: "a run's next step is
recorded ``refused``, saying so, and the run ends"; the run's own steps never wait for a
resume, only an undo's and an escalation's do), and the approval that can no longer be used
ends with it.

Before, the run ended ``refused`` with its approval still ``approved`` and nobody told: the
approver saw a decision that would never act, and the record held an approval still open for
a run that had ended. Now the approval is ``cancelled`` (who approved it and when kept), with a
reason naming the pause, audited (``approval.cancelled``) and announced like any other
cancellation.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``).
"""

from __future__ import annotations

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalState, RunOutcome
from tests.support.approvals import MakeApprovalEnv, Peer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")
REASON = "the run was refused by the pause guard (automation paused: change freeze)"


async def test_an_approved_step_refused_by_a_pause_cancels_its_approval_and_says_so(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    # The operator pauses before the approval's job is taken up.
    await env.harness.guards.pause(None, "change freeze", by="bob")
    await env.harness.drain()

    ended = await env.harness.store.get_run(run.id)
    assert ended is not None
    assert ended.outcome is RunOutcome.REFUSED, ended
    assert ended.refusal_guard == "pause"
    assert [(s.idx, s.outcome) for s in ended.steps] == [(0, "not_run")]
    cancelled = await env.desk.store.get_approval(approval.id)
    assert cancelled is not None
    assert cancelled.state is ApprovalState.CANCELLED, cancelled
    assert cancelled.decided_by == "alice"
    assert cancelled.reason == REASON
    assert peer.pokes == 0
    # The approvers are told, as of any other cancellation.
    assert "approval.cancelled" in peer.kinds(), peer.kinds()
    audit = [(a["kind"], a["data"]) for a in await env.harness.store.audit_entries(run.id)]
    kinds = [k for k, _ in audit]
    assert kinds.index("run.refused") < kinds.index("approval.cancelled")
    (data,) = [d for k, d in audit if k == "approval.cancelled"]
    assert (data["state"], data["reason"]) == ("cancelled", REASON)
    assert await env.harness.store.queue_depth() == 0
