"""Which workload holds a pod for ``kubernetes.delete_pod``: the one that would replace it
(a Pod target no controller would replace is refused), and the one that keeps the record of
its deletion.

A deleted pod cannot carry a record of its deletion, so the step's write record goes on the
workload that holds the pod: the Deployment whose ReplicaSet controls it, or the StatefulSet
or DaemonSet controlling it (``holder_of``). A pod of a ReplicaSet no Deployment controls gets
no record (the actions write no ReplicaSet). Taken up after a crash that came after the
eviction, the pod itself is gone (a ReplicaSet's or DaemonSet's replacement has a new name, a
StatefulSet's may not exist yet), so its controller cannot be read from it: ``recorded_holder``
looks for the step's record on the workloads the pod's name was made from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from remediations.base import ActionRefused
from remediations.kubernetes.kubeapi import KubeApi
from remediations.kubernetes.objects import WORKLOADS, object_ref
from remediations.targets import Target

__all__ = ["MIRROR_ANNOTATION", "holder_of", "recorded_holder", "refuse_unreplaced"]

# The kubelet's annotation on the mirror of a static pod (``kubetypes.ConfigMirrorAnnotationKey``).
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def refuse_unreplaced(pod: Mapping[str, Any], target: Target) -> None:
    """ActionRefused for a Pod target that no controller would replace: a bare pod (no
    ``ownerReferences`` entry with ``controller: true``: deleted, it and its work are gone)
    or a static pod's mirror (the kubelet's ``kubernetes.io/config.mirror`` annotation, or a
    Node as its controller: deleting the mirror restarts nothing, the kubelet runs the static
    pod on and makes the mirror again)."""
    metadata = pod.get("metadata") or {}
    ref = _controller_ref(pod)
    if MIRROR_ANNOTATION in (metadata.get("annotations") or {}) or (
        ref is not None and ref.get("kind") == "Node"
    ):
        node = (pod.get("spec") or {}).get("nodeName") or (ref or {}).get("name") or "its node"
        raise ActionRefused(
            f"{object_ref(target)} is a static pod's mirror (the kubelet of {node} runs it "
            "from a manifest on the node): deleting it does not restart it; restart it on "
            "the node, or delete a pod that a workload controls"
        )
    if ref is None:
        raise ActionRefused(
            f"{object_ref(target)} has no controller (no ownerReference with controller: "
            "true): no controller would replace it, so deleting it would lose it and its "
            "work; delete it by hand if that is meant"
        )


def _controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


async def holder_of(
    api: KubeApi, pod: Mapping[str, Any], namespace: str
) -> tuple[Target, dict[str, Any]] | None:
    """The workload keeping the record of ``pod``'s deletion, and that workload as read: the
    StatefulSet or DaemonSet controlling it, or the Deployment controlling its ReplicaSet
    (its uid checked against the ReplicaSet's ownerReference, the ReplicaSet's against the
    pod's). None for a ReplicaSet no Deployment controls, or one gone meanwhile. The
    ReplicaSet is listed by name (``replicasets`` ``list``, which the role grants already)."""
    ref = _controller_ref(pod)
    if ref is None:
        return None
    kind, name = str(ref.get("kind")), str(ref.get("name"))
    if kind in ("StatefulSet", "DaemonSet"):
        holder = Target(kind, namespace, name)
        return holder, await api.read_workload(holder)
    if kind != "ReplicaSet":
        return None
    listed = await api.call(
        f"ReplicaSet {namespace}/{name}",
        lambda: api.apps.list_namespaced_replica_set(
            namespace, field_selector=f"metadata.name={name}", **api.read_opts()
        ),
    )
    owner = next(
        (
            _controller_ref(rs)
            for rs in api.to_dict(listed).get("items") or []
            if (rs.get("metadata") or {}).get("uid") == ref.get("uid")
        ),
        None,
    )
    if owner is None or owner.get("kind") != "Deployment":
        return None
    holder = Target("Deployment", namespace, str(owner.get("name")))
    found = await _read_if_present(api, holder)
    if found is None or (found.get("metadata") or {}).get("uid") != owner.get("uid"):
        return None
    return holder, found


async def recorded_holder(api: KubeApi, target: Target) -> tuple[Target, dict[str, Any]] | None:
    """For a Pod ``target`` that is gone: the workload holding this step's record of its
    deletion, and that workload as read; None when none is found (outside a run's steps, or
    this step wrote no record). The pod's controller named it: ``<replicaset>-<5 chars>`` for
    a ReplicaSet's (its ReplicaSet ``<deployment>-<hash>``), a DaemonSet's the same from the
    DaemonSet's name, ``<statefulset>-<ordinal>``. Each such workload is read and counts only
    with a record of this step naming the pod. A name the controller had to shorten (over 58
    characters before the suffix) is not traced back: such a step, taken up after its pod
    is gone, finds nothing to delete, as before."""
    if api.step is None or "-" not in target.name:
        return None
    base = target.name.rsplit("-", 1)[0]
    candidates = [Target("StatefulSet", target.namespace, base)]
    candidates.append(Target("DaemonSet", target.namespace, base))
    if "-" in base:
        candidates.insert(0, Target("Deployment", target.namespace, base.rsplit("-", 1)[0]))
    for holder in candidates:
        found = await _read_if_present(api, holder)
        record = api.earlier_write(found) if found is not None else None
        pods = (record.change.get("before") or {}).get("pods") if record is not None else None
        if found is not None and target.name in (pods or []):
            return holder, found
    return None


async def _read_if_present(api: KubeApi, target: Target) -> dict[str, Any] | None:
    """GET the workload ``target`` as a dict; None when it does not exist."""
    method = getattr(api.apps, f"read_namespaced_{WORKLOADS[target.kind]}")
    try:
        obj = await api.call(
            object_ref(target),
            lambda: method(target.name, target.namespace, **api.read_opts()),
            allow=(404,),
        )
    except ApiException:
        return None
    return api.to_dict(obj)
