"""A step whose write cannot reach the kube-apiserver, its read having reached it, waits.

The pipeline's Kubernetes client talks plain HTTP to a small proxy on 127.0.0.1, which forwards
each request over TLS to the real kube-apiserver and answers with ``Connection: close`` (so no
connection is kept for the next request). Cut, the proxy stops listening as soon as it has
answered the plan's read of the Deployment: the step's PATCH then meets a refused connection on
every try, so no byte of it was sent. Back, it listens again on the same port.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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
from tests.support.kube_fixtures import MakeDeployment
from tests.support.pipeline import RESTART_WEB, MakeHarness

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
    assert "nothing was sent" in step.message
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
