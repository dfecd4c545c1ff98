"""HighMemoryUsage end to end (rules/high-memory.yaml, docs/playbooks/HighMemoryUsage.md).

The `app` container's working set goes to 95 % of its limit: Prometheus fires the shipped alert,
Alertmanager routes it, and the Deployment is restarted (a new template, so a new revision).
The working set falls back: the alert resolves and the run is verified. It climbs again (a new
episode within the hour): the Deployment is restarted again and raising the memory limit by
half waits for an engineer; approved through the API, the limit goes from 1Gi to 1.5Gi. The
working set falls: the second run is verified too. On-call heard about each run.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.kubernetes.quantity import value_of
from tests.e2e.conftest import CURRENT_ALERTMANAGER, Stack
from tests.support.kube_fixtures import MakeDeployment
from tests.support.runbooks import approve, deployment, own_pods, run_of, run_steps

pytestmark = [pytest.mark.e2e, pytest.mark.kube, pytest.mark.timeout(120), CURRENT_ALERTMANAGER]

RULE = "restart-on-high-memory"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
LIMIT = 1024**3  # 1Gi


def _app(dep: Any) -> Any:
    (app,) = [c for c in dep.spec.template.spec.containers if c.name == "app"]
    return app


async def test_high_memory_restarts_then_raises_the_limit_with_approval_when_it_recurs(
    stack: Stack, kube_admin: Any, bound_namespace: str, make_deployment: MakeDeployment
) -> None:
    namespace = bound_namespace
    await make_deployment(
        "web",
        replicas=2,
        containers=[
            k8s.V1Container(
                name="app",
                image="registry.invalid/web:1",
                resources=k8s.V1ResourceRequirements(limits={"memory": "1Gi"}),
            )
        ],
    )
    target = f"Deployment/{namespace}/web"
    pods = own_pods(stack.metrics, namespace, "web", 2)
    limits = {"resource": "memory", "unit": "byte", "container": "app", "namespace": namespace}
    usage = {"container": "app", "namespace": namespace, "image": "registry.invalid/web:1"}
    for pod in pods:
        stack.metrics.set("kube_pod_container_resource_limits", {**limits, "pod": pod}, LIMIT)

    def working_set(ratio: float) -> None:
        # The worst pod decides (the alert takes the max); the other stays low.
        stack.metrics.set(
            "container_memory_working_set_bytes", {**usage, "pod": pods[0]}, 0.4 * LIMIT
        )
        stack.metrics.set(
            "container_memory_working_set_bytes", {**usage, "pod": pods[1]}, ratio * LIMIT
        )

    try:
        working_set(0.95)
        first = await run_of(stack.api, RULE, target, "verifying", what="the restart")
        assert run_steps(first) == [("kubernetes.rollout_restart", "ok")]
        restarted = await deployment(kube_admin, namespace, "web")
        assert RESTARTED_AT in (restarted.spec.template.metadata.annotations or {})
        assert value_of(_app(restarted).resources.limits["memory"]) == LIMIT

        working_set(0.5)
        await run_of(stack.api, RULE, target, "verified", what="it verified")

        # It comes back within the hour: a second episode, and the escalation.
        working_set(0.97)
        second = await run_of(
            stack.api,
            RULE,
            target,
            "awaiting_approval",
            what="the raise to wait for an approval",
            index=1,
        )
        assert run_steps(second) == [
            ("kubernetes.rollout_restart", "ok"),
            ("kubernetes.set_resources", "awaiting_approval"),
        ]
        # Nothing was raised before the approval.
        waiting = await deployment(kube_admin, namespace, "web")
        assert value_of(_app(waiting).resources.limits["memory"]) == LIMIT
        await approve(stack.api, stack.sink, second["id"], "kubernetes.set_resources")

        raised = await run_of(
            stack.api,
            RULE,
            target,
            "verifying",
            what="the raise to run",
            index=1,
        )
        assert run_steps(raised)[-1] == ("kubernetes.set_resources", "ok")
        grown = await deployment(kube_admin, namespace, "web")
        assert value_of(_app(grown).resources.limits["memory"]) == LIMIT * 3 // 2

        working_set(0.6)
        await run_of(
            stack.api,
            RULE,
            target,
            "verified",
            what="the second run verified",
            index=1,
        )
        for run_id in (first["id"], second["id"]):

            def announces(body: dict[str, Any], run_id: str = run_id) -> bool:
                return body.get("run_id") == run_id

            await stack.sink.wait_for(f"announcing run {run_id}", announces)
    finally:
        stack.metrics.remove("container_memory_working_set_bytes")
        stack.metrics.remove("kube_pod_container_resource_limits")
