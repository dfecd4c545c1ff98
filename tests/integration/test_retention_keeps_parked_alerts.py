"""Retention keeps the alert event of a run that is still to be taken up again: a run parked
for its approval reads its alert back when the decision wakes it (its step writes about that
alert, and the approved plan binds what it says).

Before, an hourly prune with a retention shorter than the approval's wait deleted the event:
the approved step's fresh preview then named no alert, hashed unlike the approved plan, and
the approval was superseded, asked again and again, the step never run (and a step that wrote
about its alert would have written an empty one).
"""

from __future__ import annotations

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalState, RunOutcome
from tests.support.approvals import MakeApprovalEnv

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")


async def test_retention_keeps_the_alert_of_a_run_parked_for_its_approval(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    store = env.harness.store
    assert run.event_id is not None

    await store.prune(0.0)  # every event done is past a retention of nothing
    assert await store.get_event(run.event_id) is not None

    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    assert env.peer.pokes == 1
    decided = await env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert decided.state is ApprovalState.APPROVED
    done = await env.harness.only_run()
    assert done.outcome is not RunOutcome.AWAITING_APPROVAL
    assert [s.outcome for s in done.steps] == ["ok"], done.steps

    # Once nothing will take the run up again, its event goes with the others.
    await store.prune(0.0)
    assert await store.get_event(run.event_id) is None
