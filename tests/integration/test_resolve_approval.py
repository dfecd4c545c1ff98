"""An on_resolved step that needs an approval waits for it, as a run step and an escalation
step do: asked for with its link when the alert resolves, done once approved, never done when
the approval is rejected or expires.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): the step is a
counter on the peer, so "it ran" is counted there, and the peer takes every notification.
"""

from __future__ import annotations

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalRecord, ApprovalState, RunOutcome
from receiver.store import RunRecord
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv, poke_labels
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")

UNDO = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.poke
        approval: never
    on_resolved:
      - action: test.poke
        approval: required
      - action: test.poke
        approval: never
"""


def phases(run: RunRecord) -> list[tuple[str, str]]:
    return [(s.phase, s.outcome) for s in run.steps]


async def resolved(env: ApprovalEnv) -> tuple[RunRecord, ApprovalRecord]:
    """Fire and resolve the alert: the run's step ran, its undo waits for an approval."""
    await env.harness.deliver(poke_labels())
    assert env.peer.pokes == 1
    await env.harness.deliver(poke_labels(), status="resolved")
    run = await env.harness.only_run()
    held = next(s for s in run.steps if s.phase == "resolve")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    return run, approval


async def test_an_undo_that_needs_approval_waits_for_it_then_runs(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env(rules=UNDO)
    run, approval = await resolved(env)
    # Nothing undone yet: the first undo step waits, the one after it with it.
    assert env.peer.pokes == 1
    assert phases(run) == [
        ("run", "ok"),
        ("resolve", "awaiting_approval"),
        ("resolve", "pending"),
    ]
    assert run.outcome is RunOutcome.SUCCEEDED  # the run's own outcome stands
    assert approval.state is ApprovalState.PENDING
    assert approval.action == "test.poke"
    # Numbered after the run's step: the run step's approval can never stand for it.
    assert approval.step_idx == 1
    assert await env.desk.store.latest_approval(run.id, 0) is None
    # Announced with its link, as any approval is.
    assert env.peer.kinds() == ["approval.requested"]
    assert "http://remediator.test/approve/" in str(env.peer.notices[0])
    # A job that wakes it early (a spurious resume) changes nothing.
    await env.harness.drain()
    assert env.peer.pokes == 1

    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    run = await env.harness.only_run()
    assert env.peer.pokes == 3
    assert phases(run) == [("run", "ok"), ("resolve", "ok"), ("resolve", "ok")]
    assert run.outcome is RunOutcome.SUCCEEDED


async def test_a_rejected_undo_is_not_done(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env(rules=UNDO)
    run, approval = await resolved(env)
    await env.desk.decide(approval.id, Decision.REJECT, ALICE, API, reason="keep it")
    await env.harness.drain()
    run = await env.harness.only_run()
    assert env.peer.pokes == 1
    assert phases(run) == [("run", "ok"), ("resolve", "rejected"), ("resolve", "not_run")]
    assert "rejected by alice: keep it" in run.steps[1].message
    assert run.outcome is RunOutcome.SUCCEEDED
    # A late copy of the resolution does not bring it back.
    await env.harness.deliver(poke_labels(), status="resolved")
    assert env.peer.pokes == 1


async def test_an_undecided_undo_expires_and_is_not_done(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env(rules=UNDO, ttl_s=1.0)
    await resolved(env)

    async def probe() -> RunRecord:
        await env.harness.drain()
        return await env.harness.only_run()

    run = await eventually(probe, lambda r: [s.outcome for s in r.steps][1] == "expired")
    assert phases(run) == [("run", "ok"), ("resolve", "expired"), ("resolve", "not_run")]
    assert env.peer.pokes == 1
    assert env.peer.kinds() == ["approval.requested", "approval.expired"]
    assert run.outcome is RunOutcome.SUCCEEDED
