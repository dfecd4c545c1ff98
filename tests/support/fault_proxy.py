"""A fault-injecting reverse proxy in front of the real kube-apiserver, for retry tests.

The action's ApiClient (``proxied_client``) talks plain HTTP to a proxy on 127.0.0.1 with the
bearer token of a ServiceAccount bound to cluster-admin; the proxy (``proxy``) forwards over
TLS to the real kube-apiserver, except for the first requests of a chosen method and path,
which it answers with a fault. A test module imports both fixtures and names them in its
``__all__``."""

from __future__ import annotations

import ssl
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web
from kubernetes_asyncio import client as k8s

from remediations.base import ActionContext, Clients
from tests.support.kube import ControlPlane
from tests.support.peer import answering

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
