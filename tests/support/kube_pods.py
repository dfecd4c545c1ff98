"""Pods for ``kubernetes.delete_pod``'s tests on a real kube-apiserver + controller-manager:
the context a step gets, the live pods of a namespace or of a Deployment, and a StatefulSet or
DaemonSet with the pods its controller would create (the test control plane runs neither)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client as k8s

from remediations.base import ActionContext, Clients
from tests.support.kube_fixtures import owned_replica_sets
from tests.support.polling import eventually

Core = k8s.CoreV1Api


def step_ctx(api_client: Any, run_id: str, *, step: int | None = 0) -> ActionContext:
    """The context the pipeline gives step ``step`` of run ``run_id`` (None: no step)."""
    return ActionContext(
        run_id=run_id,
        dry_run=False,
        clients=Clients({"kubernetes": api_client}),
        recorded={},
        step=step,
        phase="run",
    )


async def live_pods(api_client: Any, ns: str) -> dict[str, str]:
    """uid -> name of every pod in ``ns`` not being deleted."""
    pods = await Core(api_client).list_namespaced_pod(ns)
    return {
        p.metadata.uid: p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp
    }


async def pods_of(api_client: Any, ns: str, deployment: str) -> dict[str, str]:
    """uid -> name of the pods whose controller is a ReplicaSet of ``deployment``."""
    owners = {rs.metadata.uid for rs in await owned_replica_sets(api_client, ns, deployment)}
    pods = await Core(api_client).list_namespaced_pod(ns)
    return {
        p.metadata.uid: p.metadata.name
        for p in pods.items
        if not p.metadata.deletion_timestamp
        and any(r.controller and r.uid in owners for r in p.metadata.owner_references or [])
    }


async def settled_pods(api_client: Any, ns: str, deployment: str, count: int) -> dict[str, str]:
    return await eventually(
        lambda: pods_of(api_client, ns, deployment),
        lambda pods: len(pods) == count,
        what=f"{count} pod(s) of {deployment}",
    )


async def make_workload(
    api_client: Any, ns: str, kind: str, name: str, labels: dict[str, str]
) -> str:
    """A StatefulSet or DaemonSet selecting ``labels``; its uid. The test control plane runs
    neither controller, so a test creates the pods they would."""
    template = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=labels),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="img/db:1")]),
    )
    selector = k8s.V1LabelSelector(match_labels=labels)
    apps = k8s.AppsV1Api(api_client)
    meta = k8s.V1ObjectMeta(name=name)
    if kind == "StatefulSet":
        sts_spec = k8s.V1StatefulSetSpec(
            replicas=2, service_name=name, selector=selector, template=template
        )
        sts = k8s.V1StatefulSet(metadata=meta, spec=sts_spec)
        return str((await apps.create_namespaced_stateful_set(ns, sts)).metadata.uid)
    ds = k8s.V1DaemonSet(
        metadata=meta, spec=k8s.V1DaemonSetSpec(selector=selector, template=template)
    )
    return str((await apps.create_namespaced_daemon_set(ns, ds)).metadata.uid)


async def make_owned_pod(
    api_client: Any, ns: str, name: str, labels: dict[str, str], kind: str, owner_uid: str
) -> str:
    """A pod controlled by the ``kind`` whose uid is ``owner_uid`` (as its controller would
    create it); the pod's uid."""
    owner = k8s.V1OwnerReference(
        api_version="apps/v1",
        kind=kind,
        name=name.rsplit("-", 1)[0],
        uid=owner_uid,
        controller=True,
        block_owner_deletion=True,
    )
    pod = await Core(api_client).create_namespaced_pod(
        ns,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels, owner_references=[owner]),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="img/db:1")]),
        ),
    )
    return str(pod.metadata.uid)
