"""``kubernetes.delete_pod`` on a Pod target, taken up after a crash, against a real
kube-apiserver and controller-manager.

A Pod target whose controller is a Deployment's ReplicaSet wrote no record of its deletion:
taken up after a crash that followed the eviction, the pod was gone, and the step said "no
(live) pod to delete" (noop) though it had deleted it. Its record now goes on the Deployment,
and a take-up whose pod is gone finds the record from the pod's name (the pod's controller
made it from its own). A StatefulSet's pod, gone and not yet replaced, was the same case.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionContext, Clients, Outcome
from remediations.kubernetes.pods import DeletePod
from remediations.targets import Target
from tests.support.kube_fixtures import MakeDeployment, owned_replica_sets
from tests.support.kube_pods import make_owned_pod, make_workload
from tests.support.polling import eventually

pytestmark = pytest.mark.kube

Core = k8s.CoreV1Api


class Crash(BaseException):
    """The worker dying mid-step: not an Exception, so nothing in the action catches it."""


def step_ctx(api_client: Any, run_id: str) -> ActionContext:
    """The context the pipeline gives step 0 of the run phase of run ``run_id``."""
    return ActionContext(
        run_id=run_id, dry_run=False, clients=Clients({"kubernetes": api_client}), step=0
    )


async def pods_of(api_client: Any, ns: str, deployment: str) -> list[str]:
    """The names of the pods a ReplicaSet of ``deployment`` controls, not being deleted."""
    owners = {rs.metadata.uid for rs in await owned_replica_sets(api_client, ns, deployment)}
    return sorted(
        p.metadata.name
        for p in (await Core(api_client).list_namespaced_pod(ns)).items
        if not p.metadata.deletion_timestamp
        and any(r.controller and r.uid in owners for r in p.metadata.owner_references or [])
    )


def crash_at_eviction(monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """The worker dies ``before`` its eviction is sent, or ``after`` the API server has
    carried it out (before its answer is read)."""
    original = Core.create_namespaced_pod_eviction

    async def crash(self: Any, *args: Any, **kwargs: Any) -> Any:
        if when == "after":
            await original(self, *args, **kwargs)
        raise Crash(f"killed {when} the eviction")

    monkeypatch.setattr(Core, "create_namespaced_pod_eviction", crash)


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_pod_of_a_deployment_keeps_its_record_on_the_deployment(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    """Crashed after the eviction, the take-up reports it done (ok), not a noop; crashed
    before it, the take-up evicts the recorded pod, and only it."""
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    [victim, other] = await eventually(
        lambda: pods_of(kube_admin, ns, "web"), lambda pods: len(pods) == 2
    )
    action, target = DeletePod(), Target("Pod", ns, victim)
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))
    with monkeypatch.context() as patched:
        crash_at_eviction(patched, when)
        with pytest.raises(Crash):
            await action.run(ctx, target, DeletePod.Params())
    assert (victim in await pods_of(kube_admin, ns, "web")) is (when == "before")

    taken_up = await action.run(ctx, target, DeletePod.Params())
    assert taken_up.outcome is Outcome.OK, taken_up.message
    assert taken_up.after == {"deleted": [victim]}
    said = f"deleted {victim} now" if when == "before" else "its pods were already gone"
    assert said in taken_up.message
    live = await eventually(lambda: pods_of(kube_admin, ns, "web"), lambda pods: len(pods) == 2)
    assert victim not in live
    assert other in live


async def test_a_statefulset_pod_gone_and_not_yet_replaced_is_reported_done(
    kube_admin: Any, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The StatefulSet's replacement of db-0 does not exist yet when the step is taken up
    (the test control plane runs no StatefulSet controller: the test makes the pods)."""
    ns = kube_namespace
    labels = {"app": "db"}
    sts_uid = await make_workload(kube_admin, ns, "StatefulSet", "db", labels)
    await make_owned_pod(kube_admin, ns, "db-0", labels, "StatefulSet", sts_uid)
    action, target = DeletePod(), Target("Pod", ns, "db-0")
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))
    with monkeypatch.context() as patched:
        crash_at_eviction(patched, "after")
        with pytest.raises(Crash):
            await action.run(ctx, target, DeletePod.Params())

    taken_up = await action.run(ctx, target, DeletePod.Params())
    assert (taken_up.outcome, taken_up.after) == (Outcome.OK, {"deleted": ["db-0"]})
    assert "its pods were already gone" in taken_up.message
    # Another step on the gone pod has no record of it: nothing to delete.
    fresh = await action.run(step_ctx(kube_admin, str(uuid.uuid4())), target, DeletePod.Params())
    assert fresh.outcome is Outcome.NOOP, fresh.message
