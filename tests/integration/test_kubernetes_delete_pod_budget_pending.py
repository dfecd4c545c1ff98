"""``kubernetes.delete_pod`` and a PodDisruptionBudget whose latest change the disruption
controller has not observed yet, against a real kube-apiserver and controller-manager.

The eviction's other 429, a budget still being processed, is sent again until the controller
has observed the budget, a bounded number of times. The tests hold the controller-manager
still to keep a change unobserved. Without a kubelet pods stay Pending, which the Eviction API
deletes without a budget check, so the tests mark them Running and Ready through the status
subresource, as a kubelet would (tests/support/kube_budgets.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from remediations.base import Outcome, TransientActionError
from remediations.kubernetes.pods import DeletePod
from remediations.kubernetes.retry import RetryPolicy, budget_pending
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_actions import FAST
from tests.support.kube_budgets import (
    Core,
    budget_allows,
    create_budget,
    make_ready,
    pods_of,
    ready_pods,
    step_ctx,
)
from tests.support.kube_fixtures import MakeDeployment

pytestmark = pytest.mark.kube


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
