"""``kubernetes.delete_pod``'s preview and dry run against PodDisruptionBudgets, on a real
kube-apiserver whose controller-manager runs the disruption controller.

A server-side dry-run eviction does not use up the budget, so each pod of a dry run was
checked as if alone: with two pods under a budget allowing one, the preview (what an engineer
approves) and the dry run said both would be deleted; live, the step evicted one and was
refused at the second, failing after having acted. The step now reads the budgets and counts
them down pod by pod: the preview and the dry run say which pod a budget would refuse, and
the live step then does what they said. Without a kubelet pods stay Pending, which the
Eviction API deletes without a budget check, so the tests set their status as a kubelet
would.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionContext, ActionRefused, Clients
from remediations.kubernetes.pods import DeletePod
from remediations.targets import Target
from tests.support.kube_actions import FAST
from tests.support.kube_budgets import budget_allows, create_budget, pods_of, ready_pods, step_ctx
from tests.support.kube_fixtures import MakeDeployment

pytestmark = pytest.mark.kube

Core = k8s.CoreV1Api


async def both_ways(
    api_client: Any, ns: str, params: Any
) -> tuple[list[str], dict[str, Any], str, ActionRefused]:
    """The step's preview (its pods in eviction order, its after, its summary) and the
    refusal of its dry run, which must have changed nothing."""
    action, target = DeletePod(FAST), Target("Deployment", ns, "web")
    clients = Clients({"kubernetes": api_client})
    previewed = await action.preview(
        ActionContext(run_id="r", dry_run=False, clients=clients), target, params
    )
    before = await pods_of(api_client, ns, "web")
    dry = ActionContext(run_id=str(uuid.uuid4()), dry_run=True, clients=clients, step=0)
    with pytest.raises(ActionRefused) as refused:
        await action.run(dry, target, params)
    assert not refused.value.may_have_acted
    assert (await pods_of(api_client, ns, "web")).keys() == before.keys()
    return list(previewed.before["pods"]), dict(previewed.after), previewed.summary, refused.value


async def refused_live(api_client: Any, ns: str, params: Any, first: str, second: str) -> None:
    """Live, the step does what its preview and dry run said: it evicts ``first`` and is
    refused at ``second``, failing as having acted."""
    with pytest.raises(ActionRefused) as live:
        await DeletePod(FAST).run(
            step_ctx(api_client, str(uuid.uuid4())), Target("Deployment", ns, "web"), params
        )
    assert live.value.may_have_acted
    assert f"not evicted: {second}; evicted: {first};" in live.value.message
    assert second in await pods_of(api_client, ns, "web")


async def test_two_pods_under_a_budget_allowing_one_preview_and_dry_run_the_refusal(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    await ready_pods(kube_admin, ns, "web", 2)
    await create_budget(kube_admin, ns, max_unavailable=1)
    await budget_allows(kube_admin, ns, "web", healthy=2, allowed=1)
    params = DeletePod.Params(max_pods=2)

    [first, second], after, summary, dry = await both_ways(kube_admin, ns, params)
    assert after == {"deleted": [first], "not_deleted": [second]}
    assert summary == (
        f"delete pod(s) {first}, {second} in namespace {ns}; but a PodDisruptionBudget would "
        f"refuse pod {second} (the disruption budget web allows 1 disruption(s) now, taken by "
        f"{first}: it needs 1 healthy pods and would have 1): the step would end refused "
        f"there, having evicted {first}, not {second}"
    )
    assert dry.message == (
        f"dry run, nothing evicted: a PodDisruptionBudget would refuse evicting pod {second} "
        f"in namespace {ns} (the disruption budget web allows 1 disruption(s) now, taken by "
        f"{first}: it needs 1 healthy pods and would have 1); would not evict: {second}; "
        f"would evict: {first}; the budget allows more once enough of its pods are ready"
    )

    await refused_live(kube_admin, ns, params, first, second)


async def test_an_unready_pod_of_a_healthy_budget_passes_without_using_it(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """Three pods, one Running but unready; a budget of minAvailable 2 has its two healthy
    and allows no disruption. The unready pod (evicted first) passes without using the
    budget, as the API server lets it; the ready one after it is refused."""
    ns = kube_namespace
    await make_deployment("web", replicas=3)
    names = await ready_pods(kube_admin, ns, "web", 3)
    unready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
    options: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
    await Core(kube_admin).patch_namespaced_pod_status(names[0], ns, {"status": unready}, **options)
    await create_budget(kube_admin, ns, min_available=2)
    await budget_allows(kube_admin, ns, "web", healthy=2, allowed=0)
    params = DeletePod.Params(max_pods=2)

    [first, second], after, summary, dry = await both_ways(kube_admin, ns, params)
    assert first == names[0]
    assert after == {"deleted": [first], "not_deleted": [second]}
    assert (
        f"would refuse pod {second} (the disruption budget web allows no disruption now: it "
        "needs 2 healthy pods and has 2)"
    ) in summary
    # The API server refuses the dry-run eviction of the second pod itself (its budget
    # allowed none to begin with): the dry run says so as what would happen, not as a
    # failure that may have evicted the first.
    assert dry.message.startswith(
        f"dry run, nothing evicted: a PodDisruptionBudget would refuse evicting pod {second} "
        f"in namespace {ns} (The disruption budget web needs 2 healthy pods and has 2 "
        f"currently); would not evict: {second}; would evict: {first};"
    )

    await refused_live(kube_admin, ns, params, first, second)
