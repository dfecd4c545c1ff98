"""``kubernetes.delete_pod`` and pods that have ended, against a real kube-apiserver and
controller-manager.

An evicted pod (phase ``Failed``, reason ``Evicted``) stays in the API until the garbage
collector's threshold removes it, still controlled by its ReplicaSet, which no longer counts it
and has created its replacement. Unready, it was picked first ("unready pods first, then the
oldest"): the step deleted the corpse, reported it done, and the sick pod went on running.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import Outcome
from remediations.kubernetes.pods import DeletePod
from remediations.targets import Target
from tests.support.kube_fixtures import MakeDeployment, first_step_ctx, owned_replica_sets
from tests.support.polling import eventually

pytestmark = pytest.mark.kube

Core = k8s.CoreV1Api


async def pods_of(kube: Any, ns: str, deployment: str) -> dict[str, str]:
    """name -> phase of the pods a ReplicaSet of ``deployment`` controls, not being deleted."""
    owners = {rs.metadata.uid for rs in await owned_replica_sets(kube, ns, deployment)}
    return {
        p.metadata.name: p.status.phase
        for p in (await Core(kube).list_namespaced_pod(ns)).items
        if not p.metadata.deletion_timestamp
        and any(r.controller and r.uid in owners for r in p.metadata.owner_references or [])
    }


async def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def end(kube: Any, ns: str, name: str, phase: str) -> None:
    """Leave pod ``name`` as its kubelet leaves a pod that ended in ``phase``: ``Failed`` as
    an evicted pod (reason Evicted), or ``Succeeded``."""
    status: dict[str, Any] = {"phase": phase}
    if phase == "Failed":
        status.update(reason="Evicted", message="The node was low on resource: memory.")
    # The client's stubs omit _content_type: the options as a dict.
    options: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
    await Core(kube).patch_namespaced_pod_status(name, ns, {"status": status}, **options)


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
async def test_an_ended_pod_is_never_the_one_deleted(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment, phase: str
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    [ended] = await eventually(lambda: pods_of(kube_admin, ns, "web"), lambda pods: len(pods) == 1)
    # Its replacement must be younger to the second (creationTimestamp's resolution), as an
    # evicted pod's is in a cluster: the oldest unready pod was the one picked.
    created = (await Core(kube_admin).read_namespaced_pod(ended, ns)).metadata.creation_timestamp
    await eventually(_now, lambda now: now >= created + datetime.timedelta(seconds=1))
    await end(kube_admin, ns, ended, phase)
    # The ReplicaSet replaces the pod that ended; both stay, and both are unready.
    pods = await eventually(lambda: pods_of(kube_admin, ns, "web"), lambda pods: len(pods) == 2)
    [live] = [name for name in pods if name != ended]

    action, target = DeletePod(), Target("Deployment", ns, "web")
    result = await action.run(first_step_ctx(kube_admin), target, DeletePod.Params())
    assert (result.outcome, result.after) == (Outcome.OK, {"deleted": [live]}), result.message
    assert ended in await pods_of(kube_admin, ns, "web")

    # Named, as a Pod target or by the workload's `pod`, it is no pod to delete either.
    for named, params in (
        (Target("Pod", ns, ended), DeletePod.Params()),
        (target, DeletePod.Params(pod=ended)),
    ):
        noop = await action.run(first_step_ctx(kube_admin), named, params)
        assert noop.outcome is Outcome.NOOP, noop.message
    assert ended in await pods_of(kube_admin, ns, "web")
