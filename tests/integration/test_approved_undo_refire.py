"""An undo approved moments before its alert fires again does not run while the alert fires.

The approval was given, so the firing's history read finds no pending approval to withdraw,
and the run job the decision queued would then take the remediation back during the new
episode. The approve stage looks at the alert's stored events before the approved on_resolved
step acts (``Store.withdraw_refired_undo``): the alert fires again, so the undo is withdrawn as
a firing withdraws a pending one (the approval cancelled and announced, the step ``not_run``,
``run.undo_withdrawn`` audited) and carried to the alert's next resolution. Both orders: the
run job taken up before the stored firing is processed, and after.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): the step sets a
value on the peer, as ``kubernetes.set_env`` sets a variable; and ``kubernetes.scale``'s
restore on the real kube-apiserver.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from receiver.approvals.policy import ApproverPolicy, Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalState
from receiver.store import WITHDRAWN, JobKind, Store
from tests.integration.test_refire_withdraws_undo import (
    RULES,
    SetValue,
    held_approval,
    phases,
    runs_in_order,
    send,
)
from tests.integration.test_restores import replicas
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv, Peer, poke_labels
from tests.support.kube_fixtures import MakeDeployment
from tests.support.payloads import alert, notification

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")


async def audit_kinds(store: Store, run_id: str, kind: str) -> list[dict[str, Any]]:
    """The data of the run's audit rows of ``kind``, in chain order."""
    rows = await store._pool.fetch(
        "SELECT data FROM audit_log WHERE run_id = $1::uuid AND kind = $2 ORDER BY id",
        run_id,
        kind,
    )
    return [json.loads(r["data"]) for r in rows]


async def take_up_jobs(env: ApprovalEnv) -> int:
    """Claim and run the due jobs only, as a worker whose claim finds the run job before the
    alert's new event: the events stay queued."""
    store = env.harness.store
    jobs = await store.claim_jobs("job-first", 50, 30.0)
    for job in jobs:
        disposition = await env.harness.pipeline.run_job(job)
        assert disposition.is_done, disposition
        await store.complete_job(job.id, "job-first", job.attempts)
    return len(jobs)


@pytest.mark.parametrize("job_first", [True, False], ids=["job-first", "firing-first"])
async def test_an_undo_approved_just_before_the_alert_fires_again_waits_for_its_resolution(
    approval_env: MakeApprovalEnv, peer: Peer, job_first: bool
) -> None:
    peer.value = 20
    env = await approval_env(rules=RULES, actions=[SetValue(peer.url)])
    await send(env, "firing", "2026-11-25T10:00:00Z")
    assert peer.value == 5
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    [first] = await runs_in_order(env)
    approval = await held_approval(env, first)

    # Approved: the decision queues the run job that takes the undo up. Before a worker does,
    # the alert fires again (a new episode); the firing is stored, not yet processed.
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.intake.accept(
        notification(alert(poke_labels(), status="firing", starts_at="2026-11-25T10:10:00Z"))
    )
    if job_first:
        assert await take_up_jobs(env) == 1
        assert peer.value == 5
    await env.harness.drain()
    assert await env.harness.store.queue_depth() == 0

    # The undo did not run: the remediation stays while the alert fires.
    assert peer.value == 5
    assert peer.sets == 1
    first, second = await runs_in_order(env)
    assert phases(second) == [(0, "run", "noop")]  # the change is still in place
    assert phases(first) == [(0, "run", "ok"), (1, "resolve", "not_run")]
    assert WITHDRAWN in first.steps[1].message
    assert first.undo_deferred
    cancelled = await env.desk.store.get_approval(approval.id)
    assert cancelled is not None
    assert cancelled.state is ApprovalState.CANCELLED
    assert cancelled.reason == WITHDRAWN
    assert cancelled.decided_by == "alice"  # who approved it stays on record
    # The approver is told why, as for a withdrawal of a pending approval.
    notices = [n for n in peer.notices if n.get("kind") == "approval.cancelled"]
    assert len(notices) == 1
    assert "fired again" in str(notices[0])
    [withdrawal] = await audit_kinds(env.harness.store, first.id, "run.undo_withdrawn")
    assert withdrawal["steps"] == [1]
    assert withdrawal["approvals"] == [approval.id]
    assert withdrawal["reason"] == WITHDRAWN

    # A retried run job withdraws nothing twice and runs nothing.
    await env.harness.store.enqueue_job(JobKind.RESUME_RUN, first.id)
    await env.harness.drain()
    assert peer.value == 5
    assert len(await audit_kinds(env.harness.store, first.id, "run.undo_withdrawn")) == 1
    assert len([n for n in peer.notices if n.get("kind") == "approval.cancelled"]) == 1

    # The new episode resolves: the carried undo asks for its approval again, and runs once.
    await send(env, "resolved", "2026-11-25T10:10:00Z", "2026-11-25T10:15:00Z")
    assert peer.value == 5
    first, _ = await runs_in_order(env)
    assert not first.undo_deferred
    carried = await held_approval(env, first)
    assert carried.id != approval.id
    await env.desk.decide(carried.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    assert peer.value == 20
    assert peer.sets == 2  # the remediation, and its undo once
    first, _ = await runs_in_order(env)
    assert phases(first)[-1] == (2, "resolve", "ok")


SCALE = """
rules:
  - name: scale-workers
    match: ['alertname="QueueBacklog"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: workers}
    steps:
      - action: kubernetes.scale
        params: {delta: 2, max: 20}
    on_resolved:
      - action: kubernetes.scale
        params: {restore: true, max: 20}
        approval: required
"""


async def backlog(env: ApprovalEnv, namespace: str, status: str, starts: str) -> None:
    """A QueueBacklog alert in through intake, not processed."""
    labels = {"alertname": "QueueBacklog", "namespace": namespace, "queue": "f"}
    await env.harness.intake.accept(notification(alert(labels, status=status, starts_at=starts)))


async def approve_held(env: ApprovalEnv) -> int:
    """Approve the on_resolved steps that wait for their approval, one at a time (the first to
    run changes the Deployment, so the other's preview moves on and is asked for again, bound
    to the new count), until none waits; returns how many were approved."""
    for approved in range(4):
        held = [
            (run.id, step.idx)
            for run in await runs_in_order(env)
            for step in run.steps
            if step.phase == "resolve" and step.outcome == "awaiting_approval"
        ]
        if not held:
            return approved
        approval = await env.desk.store.latest_approval(*held[0])
        assert approval is not None
        await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
        await env.harness.drain()
    raise AssertionError("on_resolved steps still wait for their approvals")


@pytest.mark.kube
async def test_an_approved_scale_back_waits_while_the_backlog_fires_again(
    approval_env: MakeApprovalEnv,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    # The real kube-apiserver: the approved restore would take the workers back from 8 to 6
    # while the backlog is back; it waits until the backlog ends, and then all go back to 4.
    ns = kube_namespace
    await make_deployment("workers", replicas=4)
    env = await approval_env(
        rules=SCALE,
        kube=kube_admin,
        policy=ApproverPolicy.of(by_rule={"scale-workers": ["alice"]}),
    )
    await backlog(env, ns, "firing", "2026-11-25T10:00:00Z")
    await env.harness.drain()
    assert await replicas(kube_admin, ns) == 6
    await backlog(env, ns, "resolved", "2026-11-25T10:00:00Z")
    await env.harness.drain()
    [first] = await runs_in_order(env)
    approval = await held_approval(env, first)

    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await backlog(env, ns, "firing", "2026-11-25T10:10:00Z")
    assert await take_up_jobs(env) == 1  # the approved restore, taken up first
    await env.harness.drain()
    assert await replicas(kube_admin, ns) == 8  # the new episode's scale-out, nothing taken back
    first, _ = await runs_in_order(env)
    assert [(s.phase, s.outcome) for s in first.steps] == [("run", "ok"), ("resolve", "not_run")]
    assert first.undo_deferred

    await backlog(env, ns, "resolved", "2026-11-25T10:10:00Z")
    await env.harness.drain()
    assert await replicas(kube_admin, ns) == 8  # both restores wait for their approvals
    assert await approve_held(env) >= 2
    assert await replicas(kube_admin, ns) == 4
