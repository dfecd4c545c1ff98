"""A step that needs an approval, whose preview cannot reach its system, waits for it
(receiver/pipeline/approve.py ``_plan``, receiver/pipeline/unreachable.py).

The outage is a real one (tests.support.outage): the pipeline's Kubernetes client is
pointed at a port of this host where nothing listens, so the preview's read of the Deployment
is refused on every try and nothing reaches the kube-apiserver. Items held back are due again
at once (``guards_down_retry_s`` 0), so each ``drain`` is one more try.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalState, RunOutcome
from receiver.store import DEFERRED_AUDIT
from tests.integration.test_approved_undo_refire import audit_kinds
from tests.integration.test_unreachable_system import restarted
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv, poke_labels
from tests.support.kube_fixtures import MakeDeployment
from tests.support.outage import Clock, Outage
from tests.support.payloads import alert, notification

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]

# The approval tests' "poke" rule (alice approves it), restarting the Deployment.
RULES = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
        approval: required
"""
ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.0.0.9", "pytest")


def labels(namespace: str) -> dict[str, str]:
    return {**poke_labels("web"), "namespace": namespace}


async def fire(env: ApprovalEnv, namespace: str) -> None:
    """The alert in through intake, and one pass of the queue (an item held back stays)."""
    await env.harness.intake.accept(notification(alert(labels(namespace))))
    await env.harness.drain()


async def clocked_env(
    approval_env: MakeApprovalEnv, make_deployment: MakeDeployment, outage: Outage
) -> tuple[ApprovalEnv, Clock]:
    """Deployment ``web``, and an approval environment on ``outage``'s Kubernetes client
    whose clock the test moves: a step waits at most 60 s of it for the server."""
    await make_deployment("web", replicas=1)
    clock = Clock()
    env = await approval_env(
        rules=RULES,
        kube=outage.client,
        guards_down_retry_s=0,
        clock=clock,
        unreachable_retry_s=60,
    )
    return env, clock


async def test_a_preview_during_an_outage_waits_and_asks_once_the_server_is_back(
    approval_env: MakeApprovalEnv,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    outage: Outage,
) -> None:
    await make_deployment("web", replicas=1)
    env = await approval_env(rules=RULES, kube=outage.client, guards_down_retry_s=0)
    h = env.harness
    outage.begin()
    await fire(env, kube_namespace)
    await h.drain()  # a second try, still refused
    run = await h.only_run()
    assert run.outcome is RunOutcome.RUNNING, run.error
    (step,) = run.steps
    assert step.outcome == "pending", step.message
    assert step.message.startswith(
        "waiting for its system: kubernetes could not be reached (2 tries since "
    ), step.message
    assert step.attempts == 2
    assert await env.desk.store.latest_approval(run.id, 0) is None  # nobody asked yet
    assert "approval.requested" not in env.peer.kinds()
    assert await h.store.queue_depth() == 1  # the event is kept, to be tried again
    deferred = await audit_kinds(h.store, run.id, DEFERRED_AUDIT)
    assert [(d["idx"], d["tries"]) for d in deferred] == [(0, 1)]

    outage.end()
    await h.drain()
    run = await h.only_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL, run.error
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None
    assert approval.state is ApprovalState.PENDING
    assert env.peer.kinds().count("approval.requested") == 1
    assert await h.store.queue_depth() == 0
    assert not await restarted(kube_admin, kube_namespace)


async def test_an_approved_steps_preview_during_an_outage_waits_its_approval_kept(
    approval_env: MakeApprovalEnv,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    outage: Outage,
) -> None:
    env, clock = await clocked_env(approval_env, make_deployment, outage)
    h = env.harness
    # A first outage as the alert comes in: the preview waits, then the approval is asked.
    outage.begin()
    await fire(env, kube_namespace)
    outage.end()
    await h.drain()
    run = await h.only_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL, run.error
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None

    # Approved 10 minutes later, during a second outage: the fresh preview waits, counted
    # from this outage's first try, not from the first outage's.
    clock.now += timedelta(minutes=10)
    outage.begin()
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await h.drain()
    clock.now += timedelta(seconds=30)
    await h.drain()
    run = await h.only_run()
    (step,) = run.steps
    assert step.outcome == "awaiting_approval", step.message
    assert step.message.startswith(
        f"waiting for its system: kubernetes could not be reached (2 tries since "
        f"{(clock.now - timedelta(seconds=30)).isoformat()}"
    ), step.message
    kept = await env.desk.store.get_approval(approval.id)
    assert kept is not None
    assert kept.state is ApprovalState.APPROVED
    assert env.peer.kinds().count("approval.requested") == 1  # not asked again
    assert not await restarted(kube_admin, kube_namespace)
    # The job that took the approval up is kept, to be tried again (beside the finish_end job
    # the decision queued for its notice, which the outage does not concern).
    waiting, _ = await h.store.list_jobs(state="pending", run_id=run.id)
    assert [j["kind"] for j in waiting if j["kind"] != "finish_end"] == ["resume_run"]

    outage.end()
    await h.drain()
    run = await h.only_run()
    assert run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.VERIFYING), run.error
    (step,) = run.steps
    assert step.outcome == "ok", step.message
    assert await restarted(kube_admin, kube_namespace)
    left, _ = await h.store.list_jobs(state="pending", run_id=run.id)
    assert [j["kind"] for j in left] in ([], ["finish_end"])  # its notice's, due 30 s on


async def test_a_preview_that_waited_its_bound_ends_the_step_failed(
    approval_env: MakeApprovalEnv,
    make_deployment: MakeDeployment,
    kube_namespace: str,
    outage: Outage,
) -> None:
    env, clock = await clocked_env(approval_env, make_deployment, outage)
    h = env.harness
    outage.begin()
    first = clock.now
    await fire(env, kube_namespace)
    clock.now += timedelta(seconds=61)
    await h.drain()
    run = await h.only_run()
    assert run.outcome is RunOutcome.FAILED
    (step,) = run.steps
    assert step.outcome == "failed"
    assert not step.may_have_acted
    assert step.message.startswith(
        f"cannot preview the step for approval: kubernetes could not be reached: 2 tries "
        f"from {first.isoformat()} to {clock.now.isoformat()}, the last never connected; it "
        "did not act, and this step waits at most 1m (actions.unreachable_retry_for): "
    ), step.message
    assert await env.desk.store.latest_approval(run.id, 0) is None
    assert await h.store.queue_depth() == 0
