"""``kubernetes.delete_pod`` against a real kube-apiserver + controller-manager: which pods it
picks, what it reports after a lost answer, and what a take-up after a crash does.

The control plane has no kubelet: pods stay Pending, which the Eviction API deletes without a
budget check, and a pod never scheduled is removed at once (no graceful termination), so
"deleted" reads back as "gone". Budgets: test_kubernetes_delete_pod_budget.py.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from pydantic import ValidationError

from remediations.base import ActionContext, ActionRefused, Clients, Outcome
from remediations.kubernetes.pods import DeletePod, DeletePodParams
from remediations.kubernetes.retry import RetryPolicy
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_actions import deployment, make_ctx, pod_names
from tests.support.kube_fixtures import MakeDeployment, owned_replica_sets
from tests.support.kubectl import run_kubectl
from tests.support.polling import eventually

pytestmark = pytest.mark.kube

FAST = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.0, request_timeout=10)
Core = k8s.CoreV1Api


class Crash(BaseException):
    """The worker dying mid-step: not an Exception, so nothing in the action catches it."""


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


async def test_a_delete_whose_answer_was_lost_is_reported_deleted(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first eviction reaches the server and deletes the pod; its answer is lost (a
    timeout), and the retry gets 404."""
    ns = kube_namespace
    await make_deployment("web")
    (uid, name), *_ = (await settled_pods(kube_admin, ns, "web", 1)).items()
    original = Core.create_namespaced_pod_eviction
    sent: list[str] = []

    async def lose_first_answer(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        answer = await original(self, *args, **kwargs)
        if len(sent) == 1:
            raise TimeoutError  # applied by the server, answer never read
        return answer

    monkeypatch.setattr(Core, "create_namespaced_pod_eviction", lose_first_answer)
    result = await DeletePod(FAST).run(
        step_ctx(kube_admin, str(uuid.uuid4()), step=None),
        Target("Deployment", ns, "web"),
        DeletePod.Params(),
    )

    assert sent == [name, name]  # sent, lost, sent again
    assert result.outcome is Outcome.OK, result.message
    assert result.after == {"deleted": [name]}
    assert uid not in await live_pods(kube_admin, ns)


async def test_a_take_up_after_a_crash_before_the_deletes_deletes_the_recorded_pods(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker dies after the write record reached the Deployment and before any eviction:
    the take-up (same run, same step) evicts the pod the record names, not a replacement."""
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    before = await settled_pods(kube_admin, ns, "web", 2)
    action, target = DeletePod(), Target("Deployment", ns, "web")
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))

    async def die(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise Crash("killed after the record patch, before the delete")

    with monkeypatch.context() as patched:
        patched.setattr(Core, "create_namespaced_pod_eviction", die)
        with pytest.raises(Crash):
            await action.run(ctx, target, DeletePod.Params())
    assert await pods_of(kube_admin, ns, "web") == before  # nothing deleted yet

    taken_up = await action.run(ctx, target, DeletePod.Params())
    assert taken_up.outcome is Outcome.OK, taken_up.message
    [victim] = taken_up.before["pods"]
    live = await live_pods(kube_admin, ns)
    assert victim not in live.values()
    assert taken_up.after == {"deleted": [victim]}
    assert f"deleted {victim} now" in taken_up.message
    kept = {u for u, n in before.items() if n != victim}
    assert kept <= live.keys()  # the other pod stays

    # Once more (a crash after the deletes): the pod is gone, nothing else is deleted.
    replacements = await settled_pods(kube_admin, ns, "web", 2)
    again = await action.run(ctx, target, DeletePod.Params())
    assert again.outcome is Outcome.OK, again.message
    assert again.after == {"deleted": [victim]}
    assert "already applied by this run before a restart" in again.message
    assert "its pods were already gone" in again.message
    assert await pods_of(kube_admin, ns, "web") == replacements


async def test_a_take_up_never_deletes_a_statefulset_pods_namesake(
    kube_admin: Any, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A StatefulSet's replacement pod has the deleted pod's name and another uid: the
    take-up's eviction, bound to the recorded uid, gets a uid conflict and leaves it alone.

    The test control plane runs no StatefulSet controller, so the test creates db-0 (and its
    replacement) itself, controlled by the StatefulSet as that controller would."""
    ns = kube_namespace
    labels = {"app": "db"}
    sts_uid = await make_workload(kube_admin, ns, "StatefulSet", "db", labels)

    async def create_db_0() -> str:
        return await make_owned_pod(kube_admin, ns, "db-0", labels, "StatefulSet", sts_uid)

    first = await create_db_0()
    action, target = DeletePod(), Target("Pod", ns, "db-0")
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))

    async def die(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise Crash("killed after the record patch, before the delete")

    with monkeypatch.context() as patched:
        patched.setattr(Core, "create_namespaced_pod_eviction", die)
        with pytest.raises(Crash):
            await action.run(ctx, target, DeletePod.Params())
    assert await live_pods(kube_admin, ns) == {first: "db-0"}

    taken_up = await action.run(ctx, target, DeletePod.Params())
    assert await live_pods(kube_admin, ns) == {}
    assert (taken_up.outcome, taken_up.after) == (Outcome.OK, {"deleted": ["db-0"]})
    assert "deleted db-0 now" in taken_up.message

    second = await create_db_0()  # the StatefulSet's replacement: same name, new uid
    again = await action.run(ctx, target, DeletePod.Params())
    assert (again.outcome, again.after) == (Outcome.OK, {"deleted": ["db-0"]})
    assert "its pods were already gone" in again.message
    assert await live_pods(kube_admin, ns) == {second: "db-0"}


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
