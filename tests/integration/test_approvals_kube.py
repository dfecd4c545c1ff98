"""An approved rollback against the real kube-apiserver: it lands on the revision the engineer
saw, and a Deployment that moved on after the preview is superseded, not rolled."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalRecord, ApprovalState, RunOutcome
from receiver.store import RunRecord
from remediations.base import ActionContext, ActionRefused, Clients
from remediations.kubernetes.rollback import RolloutUndo
from remediations.targets import Target
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv
from tests.support.kube import ControlPlane
from tests.support.kube_budgets import (
    budget_allows,
    create_budget,
    ready_pods,
)
from tests.support.kube_fixtures import (
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    owned_replica_sets,
    patch_deployment,
    wait_for_revision,
)

pytestmark = pytest.mark.kube

RULES = """
rules:
  - name: rollback
    match: ['alertname="HighErrorRate"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_undo
        approval: required
"""
ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.0.0.9", "pytest")


async def _image(kube: Any, ns: str) -> str:
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment("web", ns)
    image: str = dep.spec.template.spec.containers[0].image
    return image


async def _patch_image(kube: Any, ns: str, image: str) -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    await patch_deployment(kube, ns, "web", body, STRATEGIC_MERGE_PATCH)


async def _set_image(kube: Any, ns: str, image: str, revision: int) -> None:
    await _patch_image(kube, ns, image)
    await wait_for_revision(kube, ns, "web", revision)


async def _asked_once(env: ApprovalEnv, run_id: str) -> None:
    """The step's one approval was given and used: no second one was asked for."""
    latest = await env.desk.store.latest_approval(run_id, 0)
    assert latest is not None
    assert latest.state is ApprovalState.APPROVED
    assert env.peer.kinds().count("approval.requested") == 1


async def _approved(env: ApprovalEnv, approval: ApprovalRecord) -> RunRecord:
    """``approval`` given by alice, and the work it brings done: the run as it then is."""
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    return await env.harness.only_run()


async def _revision_2(kube: Any, ns: str, make_deployment: MakeDeployment) -> None:
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    await _set_image(kube, ns, "img/a:2", 2)


async def _awaiting_approval(
    approval_env: MakeApprovalEnv, kube: Any, ns: str, make_deployment: MakeDeployment
) -> tuple[ApprovalEnv, RunRecord, ApprovalRecord]:
    """``web`` at revision 2, and a HighErrorRate alert on it: the rollback's run waits for an
    engineer; the environment, the run and its pending approval."""
    await _revision_2(kube, ns, make_deployment)
    env = await approval_env(rules=RULES, kube=kube)
    await env.harness.deliver({"alertname": "HighErrorRate", "namespace": ns, "deployment": "web"})
    run = await env.harness.only_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None
    return env, run, approval


async def test_an_approved_rollout_undo_lands_on_the_bound_revision(
    approval_env: MakeApprovalEnv,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    ns = kube_namespace
    env, _, approval = await _awaiting_approval(approval_env, kube_admin, ns, make_deployment)
    rs_rev1 = (await owned_replica_sets(kube_admin, ns, "web"))[0].metadata.name
    assert approval.plan["preconditions"] == {
        "current_revision": "2",
        "to_revision": "1",
        "replicaset": rs_rev1,
    }
    assert await _image(kube_admin, ns) == "img/a:2"  # nothing happens before the decision

    run = await _approved(env, approval)
    assert run.outcome is RunOutcome.SUCCEEDED
    assert [(s.outcome, s.after) for s in run.steps] == [
        ("ok", {"to_revision": 1, "replicaset": rs_rev1, "images": {"app": "img/a:1"}})
    ]
    assert await _image(kube_admin, ns) == "img/a:1"
    await wait_for_revision(kube_admin, ns, "web", 3)  # revision 1's template, re-numbered


async def test_a_deployment_changed_after_the_preview_is_superseded_not_rolled(
    approval_env: MakeApprovalEnv,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    ns = kube_namespace
    env, run, approval = await _awaiting_approval(approval_env, kube_admin, ns, make_deployment)
    assert approval.plan["preconditions"]["current_revision"] == "2"

    await _set_image(kube_admin, ns, "img/a:3", 3)  # someone deploys a fix meanwhile
    await _approved(env, approval)

    assert await _image(kube_admin, ns) == "img/a:3"  # not rolled
    old = await env.desk.store.get_approval(approval.id)
    assert old is not None
    assert old.state is ApprovalState.SUPERSEDED
    fresh = await env.desk.store.latest_approval(run.id, 0)
    assert fresh is not None
    assert fresh.state is ApprovalState.PENDING
    assert (fresh.plan["preconditions"]["current_revision"], fresh.plan["before"]["images"]) == (
        "3",
        {"app": "img/a:3"},
    )
    assert (await env.harness.only_run()).outcome is RunOutcome.AWAITING_APPROVAL
    assert env.peer.kinds()[-2:] == ["approval.superseded", "approval.requested"]


async def test_an_approved_rollback_done_by_hand_meanwhile_is_a_noop_not_a_new_approval(
    approval_env: MakeApprovalEnv,
    control_plane: ControlPlane,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    # Someone sets revision 1's template back by hand before the engineer approves. The
    # fresh preview finds it running already: a noop. Its before was {"revision",
    # "images"} and its after {"to_revision", "replicaset", "images"}, so the approve stage
    # did not take it for "changes nothing": the approval was superseded and a second one
    # asked to roll back to what already ran. The Deployment controller is held meanwhile, so
    # the revision stays 2 (once it catches up, revision 1's ReplicaSet is renumbered 3 and
    # the rollback has no default revision left: a rollback is the newest release).
    ns = kube_namespace
    env, run, approval = await _awaiting_approval(approval_env, kube_admin, ns, make_deployment)
    with control_plane.controllers_paused():
        await _patch_image(kube_admin, ns, "img/a:1")
        done = await _approved(env, approval)

    before = {"revision": 2, "images": {"app": "img/a:1"}}
    assert [(s.outcome, s.before, s.after) for s in done.steps] == [("noop", before, before)], (
        done.steps
    )
    assert done.outcome is RunOutcome.SUCCEEDED
    await _asked_once(env, run.id)


async def test_an_approved_rollback_done_by_hand_and_renumbered_is_a_noop_not_a_refusal(
    approval_env: MakeApprovalEnv,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    # As above, but the Deployment controller catches up before the approval is taken up:
    # revision 1's ReplicaSet becomes revision 3, and revision 1 is gone. The plan from
    # scratch then had no revision to roll back to (the newest release is a rollback), so
    # the approved step ended refused although the Deployment ran exactly what was
    # approved. The approved ReplicaSet, found by name, runs: a noop.
    ns = kube_namespace
    env, run, approval = await _awaiting_approval(approval_env, kube_admin, ns, make_deployment)
    rs_rev1 = approval.plan["preconditions"]["replicaset"]
    await _set_image(kube_admin, ns, "img/a:1", 3)
    done = await _approved(env, approval)
    before = {"revision": 3, "images": {"app": "img/a:1"}}
    assert [(s.outcome, s.before, s.after) for s in done.steps] == [("noop", before, before)], (
        done.steps
    )
    assert rs_rev1 in (done.steps[0].message or "")
    assert done.outcome is RunOutcome.SUCCEEDED
    assert await _image(kube_admin, ns) == "img/a:1"
    await _asked_once(env, run.id)


async def test_an_approved_rollback_whose_target_moved_past_the_approved_template_is_refused(
    approval_env: MakeApprovalEnv,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    # Rolled back by hand (revision 3), then restarted (revision 4): the live template is
    # not the approved ReplicaSet's (it carries the restart), so it is no noop; and with a
    # rollback as the newest release there is nothing to roll back to: refused, untouched.
    ns = kube_namespace
    env, _, approval = await _awaiting_approval(approval_env, kube_admin, ns, make_deployment)
    await _set_image(kube_admin, ns, "img/a:1", 3)
    restart = {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-03T08:00:00Z"}
                }
            }
        }
    }
    await patch_deployment(kube_admin, ns, "web", restart, STRATEGIC_MERGE_PATCH)
    await wait_for_revision(kube_admin, ns, "web", 4)
    done = await _approved(env, approval)
    assert [s.outcome for s in done.steps] == ["refused"], done.steps
    assert done.outcome is RunOutcome.REFUSED
    assert await _image(kube_admin, ns) == "img/a:1"
    await wait_for_revision(kube_admin, ns, "web", 4)  # nothing rolled


async def test_run_refuses_when_state_no_longer_meets_the_approved_preconditions(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The last line: between the re-check and the write, the action compares again."""
    ns = kube_namespace
    await _revision_2(kube_admin, ns, make_deployment)
    clients = Clients({"kubernetes": kube_admin})
    target = Target("Deployment", ns, "web")
    previewed = await RolloutUndo().preview(
        ActionContext(run_id="r", dry_run=False, clients=clients), target, RolloutUndo.Params()
    )
    await _set_image(kube_admin, ns, "img/a:3", 3)
    approved = ActionContext(
        run_id="r", dry_run=False, clients=clients, approved=dict(previewed.preconditions)
    )
    with pytest.raises(ActionRefused, match="changed since the step was approved"):
        await RolloutUndo().run(approved, target, RolloutUndo.Params())
    assert await _image(kube_admin, ns) == "img/a:3"


POD_RULES = """
rules:
  - name: evict
    match: ['alertname="PodStuck"']
    target: {kind: Pod, namespace: "{{ labels.namespace }}", name: "{{ labels.pod }}"}
    steps:
      - action: kubernetes.delete_pod
"""


async def test_an_approved_eviction_of_a_pod_gone_meanwhile_is_a_noop_not_a_new_approval(
    approval_env: MakeApprovalEnv,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    # The pod the engineer approved evicting went away before the step ran (its node was
    # drained, someone deleted it): the fresh preview has no pod left to delete. Nobody is
    # asked to approve deleting nothing; the step records a noop. The noop's before was
    # {"pods": []} and its after {"deleted": []}, which the approve stage did not take for
    # "changes nothing": the approval was superseded and a second one asked for nothing.
    ns = kube_namespace
    await make_deployment("web")
    core = k8s.CoreV1Api(kube_admin)
    [pod] = (await core.list_namespaced_pod(ns, label_selector="app=web")).items
    env = await approval_env(rules=POD_RULES, kube=kube_admin)
    await env.harness.deliver({"alertname": "PodStuck", "namespace": ns, "pod": pod.metadata.name})
    run = await env.harness.only_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None
    assert approval.plan["before"] == {"pods": [pod.metadata.name]}

    # Unscheduled, the pod goes at once (no kubelet to wait for); its ReplicaSet's
    # replacement has another name.
    await core.delete_namespaced_pod(pod.metadata.name, ns)
    done = await _approved(env, approval)
    assert [(s.outcome, s.before, s.after) for s in done.steps] == [
        ("noop", {"pods": []}, {"pods": []})
    ], done.steps
    assert done.outcome is RunOutcome.SUCCEEDED
    await _asked_once(env, run.id)


WORKLOAD_RULES = """
rules:
  - name: evict
    match: ['alertname="PodsStuck"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: web}
    steps:
      - action: kubernetes.delete_pod
        params: {max_pods: 2}
"""


async def test_the_approval_of_an_eviction_says_which_pod_its_budget_would_refuse(
    approval_env: MakeApprovalEnv,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    # Two ready pods under a budget that allows one disruption. The engineer was asked to
    # approve deleting both (each dry-run eviction passes as if alone); approved, the step
    # evicted one and was refused at the second. The plan they approve now says so.
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    await ready_pods(kube_admin, ns, "web", 2)
    await create_budget(kube_admin, ns, max_unavailable=1)
    await budget_allows(kube_admin, ns, "web", healthy=2, allowed=1)
    env = await approval_env(rules=WORKLOAD_RULES, kube=kube_admin)
    await env.harness.deliver({"alertname": "PodsStuck", "namespace": ns})
    run = await env.harness.only_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None
    first, second = approval.plan["before"]["pods"]
    assert approval.plan["after"] == {"deleted": [first], "not_deleted": [second]}
    assert f"a PodDisruptionBudget would refuse pod {second}" in approval.plan["summary"]
