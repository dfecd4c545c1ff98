"""``kubernetes.delete_pod`` against a real kube-apiserver + controller-manager: which pods it
picks (only those its target controls, at most ``max_pods``) and which it refuses (a pod
nothing would replace).

The control plane has no kubelet: pods stay Pending, which the Eviction API deletes without a
budget check, and a pod never scheduled is removed at once (no graceful termination), so
"deleted" reads back as "gone". A lost answer and a take-up after a crash:
test_kubernetes_delete_pod_crash.py; the grace period: test_kubernetes_delete_pod_grace.py;
budgets: test_kubernetes_delete_pod_budget.py."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionRefused, Outcome
from remediations.kubernetes.pods import DeletePod, DeletePodParams
from remediations.targets import Target
from tests.support.kube_actions import deployment, make_ctx, pod_names
from tests.support.kube_fixtures import MakeDeployment
from tests.support.kube_pods import (
    Core,
    live_pods,
    make_owned_pod,
    make_workload,
    settled_pods,
    step_ctx,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.kube


async def test_deployment_target_deletes_only_the_pods_it_controls(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The reviewer's case: web's selector app=web also matches web-canary's pods and a bare
    pod, both older than web's own (so they would be picked first)."""
    ns = kube_namespace
    await Core(kube_admin).create_namespaced_pod(
        ns,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name="bare", labels={"app": "web"}),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="img/p:1")]),
        ),
    )
    await make_deployment("web-canary", labels={"app": "web", "track": "canary"})
    canary = await settled_pods(kube_admin, ns, "web-canary", 1)
    await make_deployment("web", replicas=2)
    own = await settled_pods(kube_admin, ns, "web", 2)
    action, target = DeletePod(), Target("Deployment", ns, "web")
    params = DeletePod.Params(max_pods=10)

    preview = await action.preview(step_ctx(kube_admin, "preview", step=None), target, params)
    assert sorted(preview.before["pods"]) == sorted(own.values())

    result = await action.run(step_ctx(kube_admin, str(uuid.uuid4())), target, params)
    assert result.outcome is Outcome.OK, result.message
    assert sorted(result.after["deleted"]) == sorted(own.values())
    live = await live_pods(kube_admin, ns)
    assert not own.keys() & live.keys()
    assert canary.keys() <= live.keys()
    assert "bare" in live.values()

    # A pod named outright qualifies on the same terms.
    again = await action.run(
        step_ctx(kube_admin, str(uuid.uuid4())), target, DeletePod.Params(pod="bare")
    )
    assert again.outcome is Outcome.NOOP
    assert "bare" in (await live_pods(kube_admin, ns)).values()


async def test_a_pod_no_controller_would_replace_is_refused(
    kube_admin: Any, kube_namespace: str
) -> None:
    """A Pod target that nothing would replace: a bare pod (deleted, it and its work would be
    gone) and a static pod's mirror (its controller is a Node, as the kubelet creates it:
    deleting it restarts nothing). Both are refused, named as the target or by ``pod``, and
    stay."""
    ns, core = kube_namespace, Core(kube_admin)
    spec = k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="img/p:1")])
    await core.create_namespaced_pod(
        ns, k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="bare"), spec=spec)
    )
    node_name = f"node-{uuid.uuid4().hex[:8]}"
    node = await core.create_node(k8s.V1Node(metadata=k8s.V1ObjectMeta(name=node_name)))
    try:
        owner = k8s.V1OwnerReference(
            api_version="v1", kind="Node", name=node_name, uid=node.metadata.uid, controller=True
        )
        mirror = f"etcd-{node_name}"
        await core.create_namespaced_pod(
            ns,
            k8s.V1Pod(
                metadata=k8s.V1ObjectMeta(
                    name=mirror,
                    annotations={"kubernetes.io/config.mirror": "a1b2c3"},
                    owner_references=[owner],
                ),
                spec=k8s.V1PodSpec(node_name=node_name, containers=spec.containers),
            ),
        )
        action = DeletePod()
        for name, said in (
            ("bare", "has no controller (no ownerReference with controller: true): no "
             "controller would replace it"),
            (mirror, f"is a static pod's mirror (the kubelet of {node_name} runs it from a "
             "manifest on the node): deleting it does not restart it"),
        ):  # fmt: skip
            for params in (DeletePod.Params(), DeletePod.Params(pod=name)):
                with pytest.raises(ActionRefused, match=re.escape(f"Pod {ns}/{name} {said}")):
                    await action.run(
                        step_ctx(kube_admin, str(uuid.uuid4())), Target("Pod", ns, name), params
                    )
        assert {"bare", mirror} <= set((await live_pods(kube_admin, ns)).values())
    finally:
        await core.delete_node(node_name)


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
async def test_a_statefulset_or_daemonset_target_deletes_only_its_own_pods(
    kube_admin: Any, kube_namespace: str, kind: str
) -> None:
    """What follows a restart of an OnDelete workload, which replaces no pod by itself. The
    workload's selector app=db also matches a bare pod and the pods of another workload whose
    labels are a superset: only the pods the target controls are deleted, and the step's
    record goes on the target, so taking the step up again deletes nothing more."""
    ns = kube_namespace
    db = {"app": "db"}
    replica = {"app": "db", "role": "replica"}
    uid = await make_workload(kube_admin, ns, kind, "db", db)
    other_uid = await make_workload(kube_admin, ns, kind, "dbreplica", replica)
    own = {await make_owned_pod(kube_admin, ns, f"db-{i}", db, kind, uid) for i in range(2)}
    other = await make_owned_pod(kube_admin, ns, "dbreplica-0", replica, kind, other_uid)
    await Core(kube_admin).create_namespaced_pod(
        ns,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name="bare", labels=db),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="img/p:1")]),
        ),
    )
    action, target = DeletePod(), Target(kind, ns, "db")
    assert action.explain(target, DeletePodParams()) == f"delete up to 1 pod(s) of {kind} {ns}/db"
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))

    result = await action.run(ctx, target, DeletePod.Params(max_pods=10))
    assert result.outcome is Outcome.OK, result.message
    assert sorted(result.after["deleted"]) == ["db-0", "db-1"]
    live = await live_pods(kube_admin, ns)
    assert not own & live.keys()
    assert other in live
    assert "bare" in live.values()

    again = await action.run(ctx, target, DeletePod.Params(max_pods=10))
    assert "already applied by this run before a restart" in again.message
    assert await live_pods(kube_admin, ns) == live
    named = await action.run(
        step_ctx(kube_admin, str(uuid.uuid4())), target, DeletePod.Params(pod="bare")
    )
    assert named.outcome is Outcome.NOOP
    assert await live_pods(kube_admin, ns) == live


async def create_pod(api_client: Any, ns: str, name: str, labels: dict[str, str]) -> Any:
    return await k8s.CoreV1Api(api_client).create_namespaced_pod(
        ns,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="img/p:1")]),
        ),
    )


async def pods_by_uid(api_client: Any, ns: str, selector: str) -> dict[str, str]:
    """uid -> name of the pods matching ``selector`` that are not being deleted."""
    pods = await k8s.CoreV1Api(api_client).list_namespaced_pod(ns, label_selector=selector)
    return {
        p.metadata.uid: p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp
    }


async def test_delete_pod_removes_exactly_the_named_pod(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """A pod of a Deployment's ReplicaSet, named as the target: that pod goes, its siblings
    stay, and the ReplicaSet replaces it (a bare pod is refused: test_kubernetes_delete_pod)."""
    ns = kube_namespace
    await make_deployment("web", replicas=3)
    pods = await eventually(
        lambda: pods_by_uid(kube_admin, ns, "app=web"), lambda pods: len(pods) == 3
    )
    victim_uid, victim = sorted(pods.items(), key=lambda item: item[1])[1]
    action, target = DeletePod(), Target("Pod", ns, victim)
    ctx = make_ctx(kube_admin)

    change = await action.preview(ctx, target, DeletePod.Params())
    result = await action.run(ctx, target, DeletePod.Params())

    assert result.outcome is Outcome.OK
    assert change.after == result.after == {"deleted": [victim]}
    assert result.before == {"pods": [victim]}
    after = await eventually(
        lambda: pods_by_uid(kube_admin, ns, "app=web"),
        lambda now: len(now) == 3 and victim_uid not in now,
    )
    assert set(pods) - {victim_uid} < set(after)  # the siblings are the same pods
    assert (await action.run(ctx, target, DeletePod.Params())).outcome is Outcome.NOOP


async def test_delete_pod_of_deployment_deletes_at_most_max_pods(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=3)
    await create_pod(kube_admin, ns, "stranger", {"app": "other"})
    pods = await eventually(
        lambda: pod_names(kube_admin, ns, "app=web"), lambda names: len(names) == 3
    )

    result = await DeletePod().run(
        make_ctx(kube_admin), deployment(ns), DeletePod.Params(max_pods=2)
    )
    assert result.outcome is Outcome.OK
    deleted = set(result.after["deleted"])
    assert len(deleted) == 2
    assert deleted <= pods
    remaining = await pod_names(kube_admin, ns)
    assert "stranger" in remaining
    assert not deleted & remaining

    # A named pod that is not the Deployment's is never deleted.
    result = await DeletePod().run(
        make_ctx(kube_admin), deployment(ns), DeletePod.Params(pod="stranger")
    )
    assert result.outcome is Outcome.NOOP
    assert "stranger" in await pod_names(kube_admin, ns)
