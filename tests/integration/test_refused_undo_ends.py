"""A follow-up of a run (its undo, its escalation) that the namespace policy refuses ends whole.

The refusal is final ("remediator will not try again"): every step of it not done yet ends,
including one held for its approval before the refused one (its approval, approved or still
pending, cancelled and the approver told), so no later pass runs a step of it once the
namespace is allowed again; the undo is announced as not done once.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``).
"""

from __future__ import annotations

import pytest

from receiver.approvals.state import Decision
from receiver.model import ApprovalState, NamespacePolicy
from receiver.store import JobKind
from tests.integration.test_approved_undo_refire import ALICE, API, take_up_jobs
from tests.integration.test_refire_withdraws_undo import (
    SetValue,
    held_approval,
    phases,
    runs_in_order,
    send,
)
from tests.support.approvals import MakeApprovalEnv, Peer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.set
        params: {value: 5}
        approval: never
    on_resolved:
      - action: test.set
        params: {value: 20}
        approval: required
      - action: test.set
        params: {value: 21}
        approval: never
    notify: {channel: ops}
"""


async def test_an_undo_the_namespace_refuses_ends_with_its_step_held_for_approval(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    peer.value = 20
    env = await approval_env(rules=RULES, actions=[SetValue(peer.url)])
    h = env.harness
    await send(env, "firing", "2026-11-25T10:00:00Z")
    assert peer.value == 5
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    [run] = await runs_in_order(env)
    approval = await held_approval(env, run)

    # The namespace is denied (a policy reload); the approver approves meanwhile, and the
    # approval's job meets the refusal.
    allowed = h.guards._policy
    h.guards._policy = NamespacePolicy(deny=("shop",))
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    assert await take_up_jobs(env) == 1
    await h.drain()
    [run] = await runs_in_order(env)
    undo = [(i, o) for i, p, o in phases(run) if p == "resolve"]
    assert [o for _i, o in undo] == ["not_run", "refused"], undo
    held = next(s for s in run.steps if s.phase == "resolve" and s.idx == undo[0][0])
    assert "refused by the namespace guard" in held.message
    ended = await env.desk.store.latest_approval(run.id, held.idx)
    assert ended is not None
    assert ended.state is ApprovalState.CANCELLED
    assert peer.kinds()[-1] == "approval.cancelled"  # the approver is told
    # The end's rows, to the letter: the held step, its approval, the undo's own row.
    audit = [(e["kind"], e["data"]) for e in await h.store.audit_entries(run.id)]
    stopped = [kind for kind, _data in audit].index("run.undo_stopped")
    why = (
        "not run: the undo ended at step 2 (test.set), refused by the namespace guard: "
        "namespace shop is not permitted by the namespace policy"
    )
    assert audit[stopped - 2 : stopped + 1] == [
        (
            "step",
            {
                "phase": "resolve",
                "idx": 1,
                "action": "test.set",
                "outcome": "not_run",
                "message": why,
                "params": {"value": 20},
                "before": None,
                "after": None,
            },
        ),
        (
            "approval.cancelled",
            {
                "approval_id": ended.id,
                "step": 1,
                "action": "test.set",
                "plan_hash": ended.plan_hash,
                "state": "cancelled",
                "reason": why,
            },
        ),
        (
            "run.undo_stopped",
            {"step": 2, "action": "test.set", "outcome": "refused", "not_run": [1]},
        ),
    ]

    # Allowed again, something takes the run's undo up (a resume_resolve job, a retried
    # resolved event): nothing of it is left to run.
    h.guards._policy = allowed
    await h.store.enqueue_job(JobKind.RESUME_RESOLVE, run.id, delay_s=0)
    await h.drain()
    [run] = await runs_in_order(env)
    assert [(i, o) for i, p, o in phases(run) if p == "resolve"] == undo
    assert peer.value == 5, "a step of the ended undo ran later"
    assert peer.announced().count("undo_failed") == 1


LADDER = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.poke
        approval: never
    verify: {resolved_within: 1s}
    on_failed:
      - action: test.poke
        approval: required
      - action: test.poke
        approval: never
    notify: {channel: ops}
"""


async def test_an_escalation_the_namespace_refuses_ends_with_its_step_held_for_approval(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env = await approval_env(rules=LADDER)
    h = env.harness
    run, _ = await env.escalated()
    assert peer.pokes == 1  # the run's own step
    held = next(s for s in run.steps if s.phase == "on_failed" and s.outcome == "awaiting_approval")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None

    allowed = h.guards._policy
    h.guards._policy = NamespacePolicy(deny=("shop",))
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await h.drain()
    run = await h.only_run()
    ladder = [(s.idx, s.outcome) for s in run.steps if s.phase == "on_failed"]
    assert [o for _i, o in ladder] == ["not_run", "refused"], ladder
    ended = await env.desk.store.latest_approval(run.id, held.idx)
    assert ended is not None
    assert ended.state is ApprovalState.CANCELLED
    assert peer.kinds()[-1] == "approval.cancelled"
    assert "run.escalation_stopped" in [e["kind"] for e in await h.store.audit_entries(run.id)]

    # Allowed again, the run's job (the approval's, claimed again) finds nothing to run.
    h.guards._policy = allowed
    await h.store.enqueue_job(JobKind.RESUME_RUN, run.id, delay_s=0)
    await h.drain()
    run = await h.only_run()
    assert [(s.idx, s.outcome) for s in run.steps if s.phase == "on_failed"] == ladder
    assert peer.pokes == 1, "a step of the ended escalation ran later"
