"""``kubernetes.delete_pod`` and PodDisruptionBudgets, against a real kube-apiserver whose
controller-manager runs the disruption controller (it computes the budgets' status).

A plain DELETE ignored budgets: a step could take up to ten pods of a workload at once. The
action evicts, and a budget's refusal (HTTP 429) ends the step: it says which pods it evicted,
which it did not and why, in the budget's words, and sends no more (a 429 was retried as
throttling); its other 429, a budget whose latest change the disruption controller has not
observed yet, is sent again until the controller has, a bounded number of times. Without a
kubelet pods stay Pending, which the Eviction API deletes without a
budget check, so the tests mark them Running and Ready through the status subresource, as a
kubelet would.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from remediations.base import (
    ActionContext,
    ActionRefused,
    Clients,
    Outcome,
    TransientActionError,
)
from remediations.kubernetes.pods import DeletePod
from remediations.kubernetes.replay import WriteRecord, records_of
from remediations.kubernetes.retry import RetryPolicy, budget_pending
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_fixtures import MakeDeployment, owned_replica_sets
from tests.support.polling import eventually

pytestmark = pytest.mark.kube

Core = k8s.CoreV1Api
FAST = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.0, request_timeout=10)


def step_ctx(api_client: Any, run_id: str) -> ActionContext:
    """The context the pipeline gives step 0 of the run phase of run ``run_id``."""
    return ActionContext(
        run_id=run_id, dry_run=False, clients=Clients({"kubernetes": api_client}), step=0
    )


async def pods_of(api_client: Any, ns: str, deployment: str) -> dict[str, Any]:
    """name -> pod of the pods a ReplicaSet of ``deployment`` controls, not being deleted."""
    owners = {rs.metadata.uid for rs in await owned_replica_sets(api_client, ns, deployment)}
    return {
        p.metadata.name: p
        for p in (await Core(api_client).list_namespaced_pod(ns)).items
        if not p.metadata.deletion_timestamp
        and any(r.controller and r.uid in owners for r in p.metadata.owner_references or [])
    }


async def make_ready(api_client: Any, ns: str, names: list[str]) -> None:
    """Mark pods Running and Ready, as their kubelet would once their containers pass."""
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    # The client's stubs omit _content_type: the options as a dict.
    options: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
    for name in names:
        await Core(api_client).patch_namespaced_pod_status(name, ns, {"status": status}, **options)


async def ready_pods(api_client: Any, ns: str, deployment: str, count: int) -> list[str]:
    """Wait for ``count`` pods of ``deployment``, mark the unready ones Ready; their names."""
    pods = await eventually(
        lambda: pods_of(api_client, ns, deployment),
        lambda found: len(found) == count,
        what=f"{count} pod(s) of {deployment}",
    )
    unready = [n for n, p in pods.items() if p.status.phase != "Running"]
    await make_ready(api_client, ns, unready)
    return sorted(pods)


async def create_budget(api_client: Any, ns: str, name: str = "web", **spec: Any) -> None:
    """Budget ``name`` selecting ``app=web``, with ``spec`` (``min_available=2``, ...)."""
    budget = k8s.V1PodDisruptionBudget(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1PodDisruptionBudgetSpec(
            selector=k8s.V1LabelSelector(match_labels={"app": "web"}), **spec
        ),
    )
    await k8s.PolicyV1Api(api_client).create_namespaced_pod_disruption_budget(ns, budget)


async def budget_allows(api_client: Any, ns: str, name: str, healthy: int, allowed: int) -> None:
    """Wait until the disruption controller has computed budget ``name``: its generation
    observed, ``healthy`` pods counted healthy, ``allowed`` disruptions allowed."""
    policy = k8s.PolicyV1Api(api_client)

    async def status() -> Any:
        return await policy.read_namespaced_pod_disruption_budget(name, ns)

    await eventually(
        status,
        lambda pdb: (
            pdb.status is not None
            and (pdb.status.observed_generation or 0) >= pdb.metadata.generation
            and (pdb.status.current_healthy, pdb.status.disruptions_allowed) == (healthy, allowed)
        ),
        what=f"budget {name}: {healthy} healthy, {allowed} disruption(s) allowed",
    )


async def step_record(api_client: Any, ns: str, deployment: str, run_id: str) -> WriteRecord:
    """The write record run ``run_id`` left on ``deployment``."""
    dep = await k8s.AppsV1Api(api_client).read_namespaced_deployment(deployment, ns)
    found = records_of(api_client.sanitize_for_serialization(dep))
    [record] = [r for r in found.values() if r.run_id == run_id]
    return record


async def test_a_budget_refusal_ends_the_step_naming_it_and_a_take_up_stays_in_its_pods(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three ready pods, a budget of minAvailable 2: one disruption allowed. A step of two
    pods evicts one; the second is refused by the budget, at once (no retries), and the step
    is refused saying so, as having acted. Taken up again (the same step after a crash) while
    the budget still refuses, it evicts nothing; once the replacement is ready, it evicts the
    second recorded pod and no other, and a further take-up evicts nothing more."""
    ns = kube_namespace
    await make_deployment("web", replicas=3)
    pods = await ready_pods(kube_admin, ns, "web", 3)
    await create_budget(kube_admin, ns, min_available=2)
    await budget_allows(kube_admin, ns, "web", healthy=3, allowed=1)

    original = Core.create_namespaced_pod_eviction
    sent: list[str] = []

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Core, "create_namespaced_pod_eviction", counted)
    action, target = DeletePod(FAST), Target("Deployment", ns, "web")
    ctx, params = step_ctx(kube_admin, str(uuid.uuid4())), DeletePod.Params(max_pods=2)
    with pytest.raises(ActionRefused) as refused:
        await action.run(ctx, target, params)
    first, second = sent  # one request each: the budget's 429 is not retried
    assert refused.value.may_have_acted
    assert refused.value.message == (
        f"a PodDisruptionBudget refused evicting pod {second} in namespace {ns} (The "
        "disruption budget web needs 2 healthy pods and has 2 currently); not evicted: "
        f"{second}; evicted: {first}; the budget allows more once enough of its pods are ready"
    )
    left = await pods_of(kube_admin, ns, "web")
    assert first not in left
    assert set(pods) - {first} <= left.keys()
    # The record says what was evicted; what was planned (and approved) stays its change,
    # which a take-up evicts again.
    record = await step_record(kube_admin, ns, "web", ctx.run_id)
    assert record.after == {"deleted": [first]}
    assert record.extra["not_deleted"] == [second]
    assert record.change["before"] == {"pods": [first, second]}

    sent.clear()
    with pytest.raises(ActionRefused) as still:
        await action.run(ctx, target, params)
    assert sent == [first, second]  # only the recorded pods; the first is gone
    assert still.value.may_have_acted  # the recorded first pod went, by the earlier attempt
    assert f"not evicted: {second}; evicted: none; already gone: {first};" in still.value.message
    record = await step_record(kube_admin, ns, "web", ctx.run_id)
    assert (record.after, record.extra["not_deleted"]) == ({"deleted": [first]}, [second])

    # The replacement becomes ready: the budget allows one disruption again.
    await ready_pods(kube_admin, ns, "web", 3)
    await budget_allows(kube_admin, ns, "web", healthy=3, allowed=1)
    taken_up = await action.run(ctx, target, params)
    assert taken_up.outcome is Outcome.OK, taken_up.message
    assert taken_up.after == {"deleted": [first, second]}
    assert f"deleted {second} now; already gone: {first}" in taken_up.message
    now = await ready_pods(kube_admin, ns, "web", 3)
    await budget_allows(kube_admin, ns, "web", healthy=3, allowed=1)

    again = await action.run(ctx, target, params)
    assert again.outcome is Outcome.OK, again.message
    assert "its pods were already gone" in again.message
    assert await ready_pods(kube_admin, ns, "web", 3) == now  # the step's limit holds: two


async def test_a_refusal_of_the_first_pod_leaves_a_record_of_no_deletion(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The step's record goes on the Deployment before the evictions. Refused at the first
    pod, it stayed saying ``{"deleted": [pod]}`` though nothing was evicted. It now says
    nothing was, and why (kept, not removed: the Deployment controller's copy on the
    ReplicaSet, which it never removes, follows the corrected one)."""
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    pods = await ready_pods(kube_admin, ns, "web", 2)
    await create_budget(kube_admin, ns, min_available=2)
    await budget_allows(kube_admin, ns, "web", healthy=2, allowed=0)
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))
    with pytest.raises(ActionRefused) as refused:
        await DeletePod(FAST).run(ctx, Target("Deployment", ns, "web"), DeletePod.Params())
    assert not refused.value.may_have_acted
    [pod] = [p for p in pods if f"not evicted: {p};" in refused.value.message]
    record = await step_record(kube_admin, ns, "web", ctx.run_id)
    assert record.after == {"deleted": []}
    assert record.extra["not_deleted"] == [pod]
    assert "The disruption budget web needs 2 healthy pods" in record.extra["refused"]

    async def copies() -> list[WriteRecord]:
        [rs] = await owned_replica_sets(kube_admin, ns, "web")
        copied = records_of(kube_admin.sanitize_for_serialization(rs))
        return [r for r in copied.values() if r.run_id == ctx.run_id]

    await eventually(
        copies,
        lambda found: [r.after for r in found] == [{"deleted": []}],
        what="the ReplicaSet's copy of the corrected record",
    )
    assert sorted(await pods_of(kube_admin, ns, "web")) == pods


async def test_a_pod_two_budgets_select_is_refused_at_once(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Eviction API does not support a pod that two budgets select: it answers 500, which
    was retried as a server fault and ended as one. One request, refused saying why."""
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    [pod] = await ready_pods(kube_admin, ns, "web", 1)
    for name in ("web-a", "web-b"):
        await create_budget(kube_admin, ns, name, max_unavailable=1)
        await budget_allows(kube_admin, ns, name, healthy=1, allowed=1)
    original = Core.create_namespaced_pod_eviction
    sent: list[str] = []

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Core, "create_namespaced_pod_eviction", counted)
    target = Target("Deployment", ns, "web")
    with pytest.raises(ActionRefused) as refused:
        await DeletePod(FAST).run(
            step_ctx(kube_admin, str(uuid.uuid4())), target, DeletePod.Params()
        )
    assert sent == [pod]
    assert not refused.value.may_have_acted
    assert refused.value.message == (
        f"a PodDisruptionBudget refused evicting pod {pod} in namespace {ns} (This pod has "
        "more than one PodDisruptionBudget, which the eviction subresource does not support); "
        f"not evicted: {pod}; evicted: none; the Eviction API evicts no pod that two budgets "
        "select: leave one selecting it"
    )
    assert pod in await pods_of(kube_admin, ns, "web")


# The eviction's own patience with a budget still being processed, short for the tests.
PENDING = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, jitter=0.0)
STILL_PROCESSED = "The disruption budget web is still being processed by the server."


async def unobserved_budget(api_client: Any, ns: str, make_deployment: MakeDeployment) -> list[str]:
    """Two ready pods of ``web`` and a budget ``web`` of maxUnavailable 1 that the disruption
    controller has computed; then, with the controller held by the caller, the budget raised
    to 2, a change it has not observed. The two pods' names, sorted: the tests' steps name
    the first (a step left to choose takes the oldest, by creation second: not always it)."""
    await make_deployment("web", replicas=2)
    pods = await ready_pods(api_client, ns, "web", 2)
    await create_budget(api_client, ns, max_unavailable=1)
    await budget_allows(api_client, ns, "web", healthy=2, allowed=1)
    return pods


async def raise_budget(api_client: Any, ns: str) -> None:
    """maxUnavailable 2 on budget ``web``: a new generation, which the controller (held)
    does not observe, so the budget's status is older than its spec."""
    policy = k8s.PolicyV1Api(api_client)
    options: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
    await policy.patch_namespaced_pod_disruption_budget(
        "web", ns, {"spec": {"maxUnavailable": 2}}, **options
    )
    pdb = await policy.read_namespaced_pod_disruption_budget("web", ns)
    assert pdb.status.observed_generation < pdb.metadata.generation


def running_and_ready(pod: Any) -> bool:
    """Whether ``pod`` is Running with its Ready condition True (eviction.go's IsPodReady)."""
    conditions = pod.status.conditions or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return bool(pod.status.phase == "Running" and ready)


async def held_ready(api_client: Any, ns: str, counted: list[str]) -> None:
    """Right before an eviction that is to meet the budget's generation check: the pods the
    disruption controller counted (``counted``) still Running, Ready and not being deleted.
    Only for such a pod does the API server check observedGeneration (v1.36
    ``pkg/registry/core/pod/storage/eviction.go``): a Pending, ended or terminating pod it
    deletes without any budget check, an unready one without the generation check while the
    budget's old status counts enough healthy pods; either let the first eviction through.
    Readiness lost meanwhile is given back, as a kubelet would (said on stdout, with who
    wrote the pod), so the controller counts them as before once resumed; a pod gone or
    being deleted fails here."""
    found = await pods_of(api_client, ns, "web")
    assert set(counted) <= found.keys(), (counted, sorted(found))
    lost = [found[name] for name in counted if not running_and_ready(found[name])]
    for pod in lost:
        writers = [
            (m.manager, m.operation, m.subresource) for m in pod.metadata.managed_fields or []
        ]
        print(f"pod {pod.metadata.name}: {pod.status.phase}, {pod.status.conditions}; {writers}")
    await make_ready(api_client, ns, [pod.metadata.name for pod in lost])
    found = await pods_of(api_client, ns, "web")
    assert set(counted) <= found.keys(), (counted, sorted(found))
    assert all(running_and_ready(found[name]) for name in counted), found


async def test_a_budget_its_controller_has_not_observed_is_waited_for(
    control_plane: ControlPlane,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A budget changed a moment ago: the API server answers 429 "still being processed"
    until the disruption controller has observed the change. That passes by itself; it was
    taken as the budget's refusal and ended the step at once. The eviction is sent again and
    goes through once the controller has caught up."""
    ns = kube_namespace
    pods = await unobserved_budget(kube_admin, ns, make_deployment)
    pod = pods[0]
    original = Core.create_namespaced_pod_eviction
    answers: list[str] = []

    with control_plane.controllers_paused() as resume:
        await raise_budget(kube_admin, ns)
        await held_ready(kube_admin, ns, pods)

        async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                reply = await original(self, *args, **kwargs)
            except ApiException as exc:
                answers.append(f"{exc.status} {budget_pending(exc)}")
                # The controller catches up only now, after the first answer: the
                # eviction's retry, not its first try, meets the budget observed.
                resume()
                await budget_allows(kube_admin, ns, "web", healthy=2, allowed=2)
                raise
            answers.append(args[0])
            return reply

        monkeypatch.setattr(Core, "create_namespaced_pod_eviction", counted)
        action = DeletePod(FAST, budget_pending=PENDING)
        ctx, params = step_ctx(kube_admin, str(uuid.uuid4())), DeletePod.Params(pod=pod)
        result = await action.run(ctx, Target("Deployment", ns, "web"), params)

    assert answers == [f"429 {STILL_PROCESSED}", pod]
    assert result.outcome is Outcome.OK, result.message
    assert result.after == {"deleted": [pod]}
    assert pod not in await pods_of(kube_admin, ns, "web")


async def test_a_budget_its_controller_never_observes_ends_the_step_after_bounded_tries(
    control_plane: ControlPlane,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the disruption controller held, the budget stays unobserved: the eviction is sent
    ``budget_pending.attempts`` times, then the step fails as transient, naming the budget
    and what to look at, as not having acted; the pod is still there."""
    ns = kube_namespace
    pods = await unobserved_budget(kube_admin, ns, make_deployment)
    pod = pods[0]
    original = Core.create_namespaced_pod_eviction
    sent: list[str] = []

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return await original(self, *args, **kwargs)

    with control_plane.controllers_paused():
        await raise_budget(kube_admin, ns)
        await held_ready(kube_admin, ns, pods)
        monkeypatch.setattr(Core, "create_namespaced_pod_eviction", counted)
        action = DeletePod(FAST, budget_pending=PENDING)
        ctx, params = step_ctx(kube_admin, str(uuid.uuid4())), DeletePod.Params(pod=pod)
        with pytest.raises(TransientActionError) as failed:
            await action.run(ctx, Target("Deployment", ns, "web"), params)
        assert pod in await pods_of(kube_admin, ns, "web")

    assert sent == [pod] * PENDING.attempts
    assert not failed.value.may_have_acted
    assert failed.value.message == (
        f"evicting pod {pod} in namespace {ns}: gave up after 3 attempts: The disruption "
        "budget web is still being processed by the server (its disruption controller has "
        "not caught up with the budget: is kube-controller-manager running it?)"
    )
