"""A step whose write cannot reach the kube-apiserver, its read having reached it, waits.

The pipeline's Kubernetes client talks plain HTTP to a small proxy on 127.0.0.1, which forwards
each request over TLS to the real kube-apiserver and answers with ``Connection: close`` (so no
connection is kept for the next request). Cut, the proxy stops listening as soon as it has
answered the plan's read of the Deployment: the step's PATCH then meets a refused connection on
every try, so no byte of it was sent. Back, it listens again on the same port. Throttling
evictions, it answers each eviction 429 as API priority and fairness does, and forwards the
rest: a ``delete_pod`` whose record was written and whose evictions never got through.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes_asyncio import client as k8s

from receiver.model import RunOutcome
from receiver.store import DEFERRED_AUDIT
from tests.integration.test_approved_undo_refire import audit_kinds
from tests.integration.test_unreachable_system import fire, restarted
from tests.integration.test_unreachable_system import web as web_alert
from tests.support.kube import ControlPlane
from tests.support.kube_budgets import pods_of, step_record
from tests.support.kube_fixtures import MakeDeployment
from tests.support.outage import Clock
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.polling import eventually

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]


@dataclass
class CuttingProxy:
    """Forwards to the kube-apiserver; ``cut_after(method, path)`` stops listening once it
    has answered that request, ``back()`` listens again on the same port."""

    upstream: str
    ssl_context: ssl.SSLContext
    port: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)
    _server: web.Server | None = None
    _listener: asyncio.base_events.Server | None = None
    _cut_after: tuple[str, str] | None = None
    # Set: every eviction is answered 429 with no PodDisruptionBudget cause (API priority and
    # fairness throttling it before any handler ran), and goes no further.
    throttle_evictions: bool = False
    # With ``throttle_evictions``: how many evictions go through before the throttling begins.
    let_evictions: int = 0
    # Set: GETs of this path are answered 429 the same way (a read throttled).
    throttle_get: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = web.Server(self.handle, access_log=None)
        await self.back()

    async def back(self) -> None:
        assert self._server is not None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._server, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._listener.sockets[0].getsockname()[1])

    def cut_after(self, method: str, path: str) -> None:
        self._cut_after = (method, path)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            await self._server.shutdown(1.0)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        key = (request.method, request.path)
        self.seen.append(key)
        eviction = key[0] == "POST" and key[1].endswith("/eviction")
        if eviction and self.throttle_evictions and self.let_evictions > 0:
            self.let_evictions -= 1
        elif (eviction and self.throttle_evictions) or key == ("GET", self.throttle_get):
            return web.json_response(_THROTTLED, status=429, headers={"Connection": "close"})
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
            response = web.Response(
                status=upstream.status,
                body=await upstream.read(),
                content_type=upstream.content_type,
            )
        response.force_close()  # "Connection: close": the next request connects anew
        if key == self._cut_after and self._listener is not None:
            # Before the answer goes out: the client's next connection finds no listener.
            self._listener.close()
            self._cut_after = None
        return response


# The Status the API server answers a request that API priority and fairness throttled.
_THROTTLED = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "Too many requests, please try again later.",
    "reason": "TooManyRequests",
    "code": 429,
}


@pytest.fixture
async def proxy(control_plane: ControlPlane) -> AsyncIterator[CuttingProxy]:
    created = CuttingProxy(
        control_plane.server, ssl.create_default_context(cafile=str(control_plane.ca_file))
    )
    await created.start()
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def proxied_kube(
    control_plane: ControlPlane, kube_admin: Any, proxy: CuttingProxy
) -> AsyncIterator[Any]:
    """An ApiClient through the proxy, as a cluster-admin ServiceAccount."""
    sa_ns, sa_name = "remediator-tests", f"admin-{uuid.uuid4().hex[:6]}"
    token = await control_plane.service_account_token(sa_ns, sa_name)
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    await rbac.create_cluster_role_binding(
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
        await rbac.delete_cluster_role_binding(f"{sa_name}-cluster-admin")


async def test_a_write_that_could_not_connect_waits_and_acts_once_the_server_is_back(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    proxy: CuttingProxy,
    proxied_kube: Any,
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    h = await make_harness(RESTART_WEB, kube=proxied_kube, dry_run=False, guards_down_retry_s=0)
    proxy.cut_after("GET", path)
    await fire(h, web_alert(ns))
    assert proxy.seen == [("GET", path)]  # the read reached the server; no PATCH did
    run = await h.only_run()
    assert run.outcome is RunOutcome.RUNNING, run.error
    (step,) = run.steps
    assert step.outcome == "pending", step.message
    assert step.message.startswith(
        "waiting for its system: kubernetes could not be reached (1 try since "
    ), step.message
    assert "it did not act" in step.message
    assert not step.may_have_acted
    assert await h.store.queue_depth() == 1
    assert not await restarted(kube_admin, ns)

    await proxy.back()
    await h.drain()
    run = await h.only_run()
    assert run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.VERIFYING), run.error
    (step,) = run.steps
    assert step.outcome == "ok", step.message
    assert await restarted(kube_admin, ns)
    assert proxy.seen.count(("PATCH", path)) == 1  # acted once, after the server came back
    assert await h.store.queue_depth() == 0
    assert len(await audit_kinds(h.store, run.id, DEFERRED_AUDIT)) == 1


# High risk: asked for an approval unless told otherwise (the approvals are not this test's).
DELETE_POD = (
    RESTART_WEB.replace("kubernetes.rollout_restart", "kubernetes.delete_pod")
    + "        approval: never\n"
)


@dataclass
class WaitingDelete:
    """A ``kubernetes.delete_pod`` step waiting for the API server (``waiting_delete``): its
    harness and clock, the pod it chose, its run, the step's message, and the write record
    as its first try left it."""

    h: Harness
    clock: Clock
    pod: str
    run_id: str
    message: str
    written: Any


async def waiting_delete(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    ns: str,
    proxy: CuttingProxy,
    proxied_kube: Any,
    *,
    rules: str = DELETE_POD,
    labels: Callable[[str], dict[str, str]] | None = None,
) -> WaitingDelete:
    """Deployment ``web`` of one pod, an alert (``labels`` of the pod's name; the Deployment's
    own alert when None) whose ``rules`` delete it, and every eviction answered 429 through
    ``proxy``: the step waits for its bound (60 s on the harness's clock), its record written
    saying the pod deleted, for the next try to carry out."""
    await make_deployment("web", replicas=1)
    [pod] = await eventually(lambda: pods_of(kube_admin, ns, "web"), lambda found: len(found) == 1)
    clock = Clock()
    h = await make_harness(
        rules,
        kube=proxied_kube,
        dry_run=False,
        guards_down_retry_s=0,
        clock=clock,
        unreachable_retry_s=60,
    )
    proxy.throttle_evictions = True
    await fire(h, web_alert(ns) if labels is None else labels(pod))
    run = await h.only_run()
    (step,) = run.steps
    assert step.outcome == "pending", step.message
    written = await step_record(kube_admin, ns, "web", run.id)
    assert written.after == {"deleted": [pod]}  # left for the next try to carry out
    return WaitingDelete(h, clock, pod, run.id, step.message, written)


async def failed_corrected(waiting: WaitingDelete, kube_admin: Any, ns: str) -> tuple[Any, Any]:
    """The waiting step failed without having acted, its record made to say no pod was
    deleted (the Deployment's pod still there): the step and the corrected record."""
    run = await waiting.h.only_run()
    assert run.outcome is RunOutcome.FAILED
    (step,) = run.steps
    assert step.outcome == "failed", step.message
    assert not step.may_have_acted
    corrected = await step_record(kube_admin, ns, "web", waiting.run_id)
    assert corrected.after == {"deleted": []}, corrected.after  # before: {"deleted": [pod]}
    assert corrected.extra["not_deleted"] == [waiting.pod]
    assert corrected.change == waiting.written.change  # what a take-up would evict, kept
    assert list(await pods_of(kube_admin, ns, "web")) == [waiting.pod]  # nothing was evicted
    return step, corrected


async def test_a_delete_pod_that_waited_out_its_bound_corrects_its_record(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    proxy: CuttingProxy,
    proxied_kube: Any,
) -> None:
    """The record goes on the Deployment before the evictions and says every chosen pod was
    deleted. While the step waits for the API server it stays (the next try carries it out);
    the try that ends the step, its wait over, makes it say none was, as a refusal does."""
    ns = kube_namespace
    waiting = await waiting_delete(
        make_harness, make_deployment, kube_admin, ns, proxy, proxied_kube
    )
    assert waiting.message.startswith(
        "waiting for its system: kubernetes was reached and refused the request"
    ), waiting.message  # a 429 to each eviction

    waiting.clock.now += timedelta(seconds=61)
    await waiting.h.drain()
    step, corrected = await failed_corrected(waiting, kube_admin, ns)
    assert step.message.startswith(
        "kubernetes was reached and refused the request: 2 tries from "
    ), step.message
    assert "429" in corrected.extra["not_reached"], corrected.extra


async def test_a_correction_that_cannot_reach_the_server_is_said_in_the_step(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    proxy: CuttingProxy,
    proxied_kube: Any,
) -> None:
    """The last try plans (the Deployment, its pods, its ReplicaSets read: its record found),
    then the server goes away: its evictions and the record's correction meet a refused
    connection. The step fails, not having acted, saying the record still claims the pod
    deleted."""
    ns = kube_namespace
    waiting = await waiting_delete(
        make_harness, make_deployment, kube_admin, ns, proxy, proxied_kube
    )
    waiting.clock.now += timedelta(seconds=61)
    proxy.cut_after("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")  # the plan's last read
    await waiting.h.drain()
    run = await waiting.h.only_run()
    assert run.outcome is RunOutcome.FAILED
    (step,) = run.steps
    assert step.outcome == "failed", step.message
    assert not step.may_have_acted
    assert "ClientConnectorError" in step.message, step.message
    assert (
        f"the step's write record on Deployment {ns}/web (annotation write.remediator.io/"
        in step.message
    ), step.message
    assert "still says every chosen pod was deleted, correcting it failed: " in step.message
    await proxy.back()
    assert (await step_record(kube_admin, ns, "web", run.id)).after == {"deleted": [waiting.pod]}
