"""Retries against the real API server behind a fault-injecting reverse proxy: which
failures are retried (until success or until the attempts run out) and which are not.

The action's ApiClient talks plain HTTP to a proxy on 127.0.0.1 with the bearer token of a
ServiceAccount bound to cluster-admin; the proxy (tests/support/fault_proxy.py) forwards over
TLS to the real kube-apiserver, except for the first requests of a chosen method and path,
which it answers with a fault. A write whose answer was lost:
test_kubernetes_lost_answers.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionRefused, Outcome, TransientActionError
from remediations.kubernetes.restart import RESTARTED_AT, RolloutRestart
from remediations.kubernetes.retry import RetryPolicy
from remediations.kubernetes.scale import Scale
from remediations.targets import Target
from tests.support.fault_proxy import (
    DROP,
    FaultProxy,
    ctx_for,
    deployment_path,
    proxied_client,
    proxy,
)
from tests.support.kube_actions import FAST
from tests.support.kube_fixtures import MakeDeployment

__all__ = ["proxied_client", "proxy"]  # the fixtures, used here by name


pytestmark = pytest.mark.kube


@pytest.mark.parametrize(
    ("method", "statuses"),
    [
        ("GET", (503, 503)),
        ("GET", (429,)),
        ("PATCH", (429, 503, 500)),
        ("GET", (DROP,)),
    ],
    ids=["get-503x2", "get-429", "patch-429-503-500", "get-connection-drop"],
)
async def test_transient_failures_are_retried_until_success(
    method: str,
    statuses: tuple[int, ...],
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    path = deployment_path(ns)
    proxy.inject(method, path, *statuses)

    result = await RolloutRestart(retry=FAST).run(
        ctx_for(proxied_client), Target("Deployment", ns, "web"), RolloutRestart.Params()
    )

    assert result.outcome is Outcome.OK
    assert proxy.attempts[(method, path)] == len(statuses) + 1
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert dep.spec.template.metadata.annotations[RESTARTED_AT] == result.after["restartedAt"]


async def test_scale_patch_is_retried_on_503(
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    # scale patches the Deployment itself (replicas and its write record in one request).
    path = deployment_path(ns)
    proxy.inject("PATCH", path, 503)

    result = await Scale(retry=FAST).run(
        ctx_for(proxied_client), Target("Deployment", ns, "web"), Scale.Params(replicas=2, max=3)
    )

    assert result.outcome is Outcome.OK
    # The injected 503 was retried. The real server may add a 409 of its own (the controller
    # bumped the resourceVersion between read and PATCH), which the action re-reads and resends.
    assert proxy.faults[("PATCH", path)] == []
    answered = proxy.answered[("PATCH", path)]
    assert answered[-1] == 200
    assert set(answered[:-1]) <= {409}
    assert proxy.attempts[("PATCH", path)] == 1 + len(answered)
    scale = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 2


async def test_exhausted_retries_raise_transient_error(
    proxied_client: Any, proxy: FaultProxy, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    path = deployment_path(ns)
    proxy.inject("GET", path, *([503] * 10))
    policy = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02, jitter=0.0)

    with pytest.raises(TransientActionError, match="gave up after 3 attempts: HTTP 503"):
        await RolloutRestart(retry=policy).run(
            ctx_for(proxied_client), Target("Deployment", ns, "web"), RolloutRestart.Params()
        )
    assert proxy.attempts[("GET", path)] == 3
    assert proxy.attempts[("PATCH", path)] == 0


@pytest.mark.parametrize(("method", "status"), [("GET", 400), ("GET", 403), ("PATCH", 404)])
async def test_client_errors_are_not_retried(
    method: str,
    status: int,
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    before = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    path = deployment_path(ns)
    proxy.inject(method, path, status)

    with pytest.raises(ActionRefused) as excinfo:
        await RolloutRestart(retry=FAST).run(
            ctx_for(proxied_client), Target("Deployment", ns, "web"), RolloutRestart.Params()
        )

    assert proxy.attempts[(method, path)] == 1
    if status == 404:
        assert excinfo.value.message == f"Deployment {ns}/web not found"
    elif status == 403:
        assert excinfo.value.message == f"forbidden: injected fault {status}"
    else:
        assert f"HTTP {status}" in excinfo.value.message
    after = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert after.spec.template == before.spec.template
    assert json.dumps(after.metadata.annotations, sort_keys=True) == json.dumps(
        before.metadata.annotations, sort_keys=True
    )
