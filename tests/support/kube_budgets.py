"""PodDisruptionBudgets and ready pods for tests on a real kube-apiserver whose
controller-manager runs the disruption controller (it computes the budgets' status).

Without a kubelet pods stay Pending, which the Eviction API deletes without a budget check, so
``ready_pods`` marks them Running and Ready through the status subresource, as a kubelet
would; ``budget_allows`` waits until the controller has counted them."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client as k8s

from remediations.base import ActionContext, Clients
from remediations.kubernetes.replay import WriteRecord, records_of
from tests.support.kube_fixtures import owned_replica_sets
from tests.support.polling import eventually

Core = k8s.CoreV1Api


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
