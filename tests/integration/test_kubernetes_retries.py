"""Retries against the real API server behind a fault-injecting reverse proxy.

The action's ApiClient talks plain HTTP to a proxy on 127.0.0.1 with the bearer token of a
ServiceAccount bound to cluster-admin; the proxy forwards over TLS to the real kube-apiserver,
except for the first requests of a chosen method and path, which it answers with a fault.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from kubernetes_asyncio import client as k8s

from remediations.base import (
    ActionContext,
    ActionRefused,
    Clients,
    Outcome,
    TransientActionError,
)
from remediations.kubernetes.container import SetEnv
from remediations.kubernetes.restart import RESTARTED_AT, RolloutRestart
from remediations.kubernetes.retry import RetryPolicy
from remediations.kubernetes.rollback import RolloutUndo
from remediations.kubernetes.scale import Scale
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_actions import make_revision_2
from tests.support.kube_fixtures import (
    MakeDeployment,
    first_step_ctx,
    owned_replica_sets,
    wait_for_quiet,
    wait_for_revision,
)
from tests.support.peer import answering

pytestmark = pytest.mark.kube

FAST = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.0, request_timeout=10)
DROP = 0  # a fault "status" meaning: close the connection without answering
LOST = -1  # a fault "status" meaning: forward the request, then close without answering


@dataclass
class FaultProxy:
    upstream: str
    ssl_context: ssl.SSLContext
    url: str = ""
    # (method, path) -> statuses still to inject, in order
    faults: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (method, path) -> statuses the real API server answered, in order
    answered: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # Awaited once a LOST request has been answered upstream, before its answer is dropped.
    on_lost: Callable[[], Awaitable[None]] | None = None

    def inject(self, method: str, path: str, *statuses: int) -> None:
        self.faults[(method, path)] = list(statuses)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = (request.method, request.path)
        self.attempts[key] += 1
        pending = self.faults.get(key)
        if pending:
            status = pending.pop(0)
            if status == DROP:
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)  # never reaches the client
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"injected fault {status}",
                "code": status,
            }
            if status != LOST:
                return web.json_response(body, status=status, headers={"Retry-After": "0"})
            await self.forward(request)
            if self.on_lost is not None:
                await self.on_lost()
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        return await self.forward(request)

    async def forward(self, request: web.Request) -> web.Response:
        key = (request.method, request.path)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "accept", "user-agent")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                headers=headers,
                data=await request.read(),
                ssl=self.ssl_context,
            ) as upstream,
        ):
            self.answered.setdefault(key, []).append(upstream.status)
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                content_type=upstream.content_type,
            )


@pytest_asyncio.fixture
async def proxy(control_plane: ControlPlane) -> AsyncIterator[FaultProxy]:
    fault_proxy = FaultProxy(
        upstream=control_plane.server,
        ssl_context=ssl.create_default_context(cafile=str(control_plane.ca_file)),
    )
    async with answering(fault_proxy.handle) as fault_proxy.url:
        yield fault_proxy


@pytest_asyncio.fixture
async def proxied_client(
    control_plane: ControlPlane, kube_admin: Any, proxy: FaultProxy
) -> AsyncIterator[Any]:
    """An ApiClient through the proxy, as a cluster-admin ServiceAccount."""
    sa_ns, sa_name = "remediator-tests", f"admin-{uuid.uuid4().hex[:6]}"
    token = await control_plane.service_account_token(sa_ns, sa_name)
    await k8s.RbacAuthorizationV1Api(kube_admin).create_cluster_role_binding(
        k8s.V1ClusterRoleBinding(
            metadata=k8s.V1ObjectMeta(name=f"{sa_name}-cluster-admin"),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name=sa_name, namespace=sa_ns)],
        )
    )
    config = k8s.Configuration(host=proxy.url)
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    api_client = k8s.ApiClient(configuration=config)
    try:
        yield api_client
    finally:
        await api_client.close()
        await k8s.RbacAuthorizationV1Api(kube_admin).delete_cluster_role_binding(
            f"{sa_name}-cluster-admin"
        )


def ctx_for(api_client: Any) -> ActionContext:
    return ActionContext(
        run_id="run-retry", dry_run=False, clients=Clients({"kubernetes": api_client})
    )


def deployment_path(ns: str, name: str = "web") -> str:
    return f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"


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


async def test_an_undo_whose_answer_was_lost_is_reported_done(
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """The rollback PATCH lands, its answer is lost, and the controller makes the rollback
    revision 3 before the retry: the retried JSON Patch's `test` of revision 2 fails with 422.
    The step's own write record on the Deployment says the rollback was done: ok, not
    "revision changed ... not rolling back"."""
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    # As below: the rollback carries the resourceVersion it read.
    await wait_for_quiet(kube_admin, ns, "web")
    rs_rev1 = (await owned_replica_sets(kube_admin, ns, "web"))[0]
    path = deployment_path(ns)

    async def rolled_back() -> None:
        await wait_for_revision(kube_admin, ns, "web", 3)

    proxy.on_lost = rolled_back
    proxy.inject("PATCH", path, LOST)
    ctx = first_step_ctx(proxied_client)

    result = await RolloutUndo(retry=FAST).run(
        ctx, Target("Deployment", ns, "web"), RolloutUndo.Params()
    )

    assert result.outcome is Outcome.OK, result.message
    assert result.before == {"revision": 2, "images": {"app": "img/a:2"}}
    assert result.after == {
        "to_revision": 1,
        "replicaset": rs_rev1.metadata.name,
        "images": {"app": "img/a:1"},
    }
    assert proxy.answered[("PATCH", path)] == [200, 422]  # applied, then the retry's `test`
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert dep.spec.template.spec.containers[0].image == "img/a:1"
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"


async def test_a_landed_write_stays_may_have_acted_when_its_replan_cannot_read(
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """The set_env PATCH lands and its answer is lost; the retry meets 409 (its own write moved
    the resourceVersion), and the re-plan's read then fails (an overloaded API server). The
    step must fail as "may have acted", or its run counts as having changed nothing and its
    on_resolved steps are never planned."""
    ns = kube_namespace
    await make_deployment("web")
    # The write carries the resourceVersion it read: wait until the controller has stopped
    # writing the new Deployment's status, or the first PATCH meets its 409 instead of landing.
    await wait_for_quiet(kube_admin, ns, "web")
    path = deployment_path(ns)

    async def overloaded() -> None:
        proxy.inject("GET", path, *([503] * 6))

    proxy.on_lost = overloaded
    proxy.inject("PATCH", path, LOST)
    ctx = first_step_ctx(proxied_client)

    with pytest.raises(TransientActionError) as caught:
        await SetEnv(retry=FAST).run(
            ctx,
            Target("Deployment", ns, "web"),
            SetEnv.Params(container="app", name="DB_POOL_SIZE", value="5"),
        )

    assert proxy.answered[("PATCH", path)] == [200, 409]  # applied, then the retry's conflict
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env or []}
    assert env.get("DB_POOL_SIZE") == "5"
    assert caught.value.may_have_acted is True


async def test_a_scale_whose_patch_landed_stays_may_have_acted_when_its_reread_is_throttled(
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """The scale PATCH lands and its answer is lost; the retry meets 409 (its own write moved
    the resourceVersion), and the re-read that would find the step's record is throttled on
    every try (429: that read did not act). The step must still fail as "may have acted": a
    429 says nothing of the PATCH before it, and such a step would otherwise wait and scale
    again from the count it set."""
    ns = kube_namespace
    await make_deployment("web")
    await wait_for_quiet(kube_admin, ns, "web")
    path = deployment_path(ns)

    async def throttled() -> None:
        proxy.inject("GET", path, *([429] * 6))

    proxy.on_lost = throttled
    proxy.inject("PATCH", path, LOST)
    ctx = first_step_ctx(proxied_client)

    with pytest.raises(TransientActionError) as caught:
        await Scale(retry=FAST).run(
            ctx, Target("Deployment", ns, "web"), Scale.Params(replicas=2, max=3)
        )

    assert proxy.answered[("PATCH", path)] == [200, 409]  # applied, then the retry's conflict
    assert "HTTP 429" in caught.value.message
    scale = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 2
    assert caught.value.may_have_acted is True


async def test_an_undo_whose_answer_was_lost_and_whose_reread_is_throttled_may_have_acted(
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """As above, the rollback lands, its answer lost, and its retry's `test` fails with 422;
    then the read that would find the step's record is throttled on every try (429). The
    429s did not act, the PATCH before them did: the step fails as "may have acted"."""
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    await wait_for_quiet(kube_admin, ns, "web")
    path = deployment_path(ns)

    async def rolled_back_then_throttled() -> None:
        await wait_for_revision(kube_admin, ns, "web", 3)
        proxy.inject("GET", path, *([429] * 6))

    proxy.on_lost = rolled_back_then_throttled
    proxy.inject("PATCH", path, LOST)
    ctx = first_step_ctx(proxied_client)

    with pytest.raises(TransientActionError) as caught:
        await RolloutUndo(retry=FAST).run(
            ctx, Target("Deployment", ns, "web"), RolloutUndo.Params()
        )

    assert proxy.answered[("PATCH", path)] == [200, 422]
    assert "HTTP 429" in caught.value.message
    assert caught.value.may_have_acted is True
