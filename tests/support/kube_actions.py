"""Helpers for tests that run Kubernetes actions directly on a real kube-apiserver: the
context a step gets, a Deployment target, and reads of what an action changed (the Deployment,
one of its containers, its pods)."""

from __future__ import annotations

import uuid
from typing import Any

from kubernetes_asyncio import client as k8s

from remediations.base import ActionContext, Clients
from remediations.kubernetes.retry import RetryPolicy
from remediations.targets import Target
from tests.support.kube_fixtures import (
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    patch_deployment,
    wait_for_revision,
)

# Retries short enough for a test: four attempts, at most 50 ms apart.
FAST = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.0, request_timeout=10)


def make_ctx(
    api_client: Any,
    *,
    dry_run: bool = False,
    run_id: str | None = None,
    recorded: dict[str, dict[str, Any]] | None = None,
    step: int | None = None,
    phase: str = "run",
) -> ActionContext:
    return ActionContext(
        run_id=run_id or f"run-{uuid.uuid4().hex[:8]}",
        dry_run=dry_run,
        clients=Clients({"kubernetes": api_client}),
        recorded=recorded or {},
        step=step,
        phase=phase,
    )


def deployment(ns: str, name: str = "web") -> Target:
    return Target("Deployment", ns, name)


async def read(api_client: Any, ns: str, name: str = "web") -> Any:
    return await k8s.AppsV1Api(api_client).read_namespaced_deployment(name, ns)


async def read_scale(api_client: Any, ns: str, name: str = "web") -> int:
    scale = await k8s.AppsV1Api(api_client).read_namespaced_deployment_scale(name, ns)
    return int(scale.spec.replicas)


def container(dep: Any, name: str) -> Any:
    return next(c for c in dep.spec.template.spec.containers if c.name == name)


def two_containers() -> list[Any]:
    return [
        k8s.V1Container(
            name="app",
            image="registry.invalid/app:1",
            env=[k8s.V1EnvVar(name="KEEP", value="1")],
            resources=k8s.V1ResourceRequirements(
                limits={"memory": "256Mi", "cpu": "500m"}, requests={"memory": "128Mi"}
            ),
        ),
        k8s.V1Container(
            name="sidecar",
            image="registry.invalid/sidecar:1",
            resources=k8s.V1ResourceRequirements(limits={"memory": "64Mi"}),
        ),
    ]


async def snapshot(api_client: Any, ns: str, name: str = "web") -> dict[str, Any]:
    """What a write would change: generation, spec and annotations (not controller status)."""
    dep = api_client.sanitize_for_serialization(await read(api_client, ns, name))
    return {
        "generation": dep["metadata"]["generation"],
        "annotations": dep["metadata"].get("annotations"),
        "spec": dep["spec"],
    }


async def make_revision_2(api_client: Any, ns: str, make_deployment: MakeDeployment) -> None:
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    await set_image(api_client, ns, "img/a:2")
    await wait_for_revision(api_client, ns, "web", 2)


async def set_image(api_client: Any, ns: str, image: str) -> None:
    await patch_deployment(
        api_client,
        ns,
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
        STRATEGIC_MERGE_PATCH,
    )


async def pod_names(api_client: Any, ns: str, selector: str = "") -> set[str]:
    pods = await k8s.CoreV1Api(api_client).list_namespaced_pod(ns, label_selector=selector)
    return {p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp}
