"""``kubernetes.delete_pod``'s grace period against a real kube-apiserver + controller-manager,
compared with the pinned kubectl.

The control plane has no kubelet: a pod bound to a node and deleted gracefully stays
terminating for good, where one deleted with no grace period is removed at once."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from pydantic import ValidationError

from remediations.base import Outcome
from remediations.kubernetes.pods import DeletePod
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_actions import FAST
from tests.support.kube_pods import Core, make_workload, step_ctx
from tests.support.kubectl import run_kubectl

pytestmark = pytest.mark.kube


async def scheduled_pod(
    api_client: Any, ns: str, name: str, statefulset_uid: str | None = None
) -> str:
    """A pod bound to a node, as the scheduler leaves it for a kubelet to run (controlled by
    StatefulSet ``db`` of ``statefulset_uid`` when given); its uid. No kubelet runs here, so a
    graceful delete (or eviction) leaves it terminating (a deletionTimestamp) for good, where
    one with gracePeriodSeconds 0 removes it at once."""
    owners = [
        k8s.V1OwnerReference(
            api_version="apps/v1", kind="StatefulSet", name="db", uid=uid, controller=True
        )
        for uid in [statefulset_uid]
        if uid is not None
    ]
    pod = await Core(api_client).create_namespaced_pod(
        ns,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(
                name=name, labels={"app": "db"}, owner_references=owners or None
            ),
            spec=k8s.V1PodSpec(
                node_name="node-a",
                termination_grace_period_seconds=30,
                containers=[k8s.V1Container(name="c", image="img/db:1")],
            ),
        ),
    )
    return str(pod.metadata.uid)


async def still_terminating(api_client: Any, ns: str, name: str) -> bool:
    """Whether pod ``name`` is still in the API, marked for deletion (waiting for its kubelet)."""
    pods = await Core(api_client).list_namespaced_pod(ns, field_selector=f"metadata.name={name}")
    return [bool(p.metadata.deletion_timestamp) for p in pods.items] == [True]


@pytest.mark.parametrize("grace", [0, 1, 5])
async def test_no_grace_period_removes_a_running_pod_before_its_kubelet_stops_it(
    kube_admin: Any,
    kube_namespace: str,
    control_plane: ControlPlane,
    kubectl: Path,
    grace: int,
) -> None:
    """``grace_period_seconds: 0`` sent as it is was a force delete: the API server removed the
    running pod at once, so its controller's replacement (a StatefulSet's, under the same
    name) could run beside containers still stopping. kubectl sends 1 for --grace-period=0
    without --force; a rule's 0 is refused when its params are read, saying so, and every
    grace it may give leaves the pod terminating as kubectl's delete does."""
    ns, config = kube_namespace, control_plane.admin_kubeconfig
    await scheduled_pod(kube_admin, ns, "by-kubectl")
    run_kubectl(
        kubectl, "--kubeconfig", str(config), "-n", ns, "delete", "pod", "by-kubectl",
        f"--grace-period={grace}", "--wait=false",
    )  # fmt: skip
    assert await still_terminating(kube_admin, ns, "by-kubectl")

    if grace == 0:
        with pytest.raises(ValidationError, match="0 is a force delete") as refused:
            DeletePod.Params(grace_period_seconds=grace)
        assert "give 1 for the shortest graceful delete" in str(refused.value)
        return
    params = DeletePod.Params(grace_period_seconds=grace)
    sts_uid = await make_workload(kube_admin, ns, "StatefulSet", "db", {"app": "db"})
    await scheduled_pod(kube_admin, ns, "db-0", sts_uid)
    result = await DeletePod(FAST).run(
        step_ctx(kube_admin, str(uuid.uuid4())), Target("Pod", ns, "db-0"), params
    )
    assert (result.outcome, result.after) == (Outcome.OK, {"deleted": ["db-0"]}), result.message
    assert await still_terminating(kube_admin, ns, "db-0")
