"""A connection never made, timed out, reads as one that sent nothing (remediations/
request_timeout.py); a request sent and never answered still reads as one that may have acted.

The black hole is a real one: a loopback socket listening with a backlog of 0 whose queue
this test fills with connections it never accepts, so the kernel drops every further SYN and a
client's connect hangs until its timeout, as towards a host gone from the network. The
silent server accepts, reads the request, and never answers.

Before, a Kubernetes write and an ``http.call`` bounded by a total timeout alone ran it out in
the connector and raised a plain ``asyncio.TimeoutError``, which reads as may have acted: the
step failed at once instead of waiting for its system.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionContext, Clients, TransientActionError
from remediations.http.post import HttpPolicy, post_json
from remediations.kubernetes.kubeapi import MERGE_PATCH, KubeApi
from remediations.kubernetes.retry import RetryPolicy

FAST = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.01, jitter=0.0, request_timeout=0.6)
HTTP_FAST = HttpPolicy(timeout=0.6, attempts=2, initial_wait=0.01, max_wait=0.01)


@pytest.fixture
async def black_hole() -> AsyncIterator[int]:
    """A loopback port whose connects hang: its listen queue full, never accepted."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        fillers: list[socket.socket] = []
        try:
            for _ in range(4):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                fillers.append(filler)
                # Non-blocking: the handshake completes in the kernel, never accepted.
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            # The precondition: a connect now hangs (were the queue not full, it would be
            # accepted by the kernel at once and the tests below would prove nothing).
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.3)
            yield port
        finally:
            for filler in fillers:
                filler.close()


@pytest.fixture
async def silent() -> AsyncIterator[int]:
    """A loopback HTTP port that reads each request and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def kube_at() -> AsyncIterator[Callable[[int], KubeApi]]:
    """``kube_at(port)``: a KubeApi whose client talks plain HTTP to ``port`` of this host."""
    clients: list[Any] = []

    def make(port: int) -> KubeApi:
        config = k8s.Configuration(host=f"http://127.0.0.1:{port}")
        client = k8s.ApiClient(configuration=config)
        clients.append(client)
        ctx = ActionContext(run_id="r", dry_run=False, clients=Clients({"kubernetes": client}))
        return KubeApi(ctx, FAST, "kubernetes.scale")

    yield make
    for client in clients:
        await client.close()


async def _scale(api: KubeApi) -> None:
    """A write: PATCH the Deployment web's replicas, through ``api.call``."""
    body = {"spec": {"replicas": 3}}
    await api.call(
        "Deployment shop/web",
        lambda: api.apps.patch_namespaced_deployment(
            "web", "shop", body, **api.write_opts(MERGE_PATCH)
        ),
    )


async def test_a_kubernetes_write_that_never_connected_did_not_act(
    black_hole: int, kube_at: Callable[[int], KubeApi]
) -> None:
    with pytest.raises(TransientActionError) as raised:
        await _scale(kube_at(black_hole))
    assert not raised.value.may_have_acted, raised.value.message
    assert "ConnectionTimeoutError" in raised.value.message, raised.value.message


async def test_a_kubernetes_write_sent_and_never_answered_may_have_acted(
    silent: int, kube_at: Callable[[int], KubeApi]
) -> None:
    with pytest.raises(TransientActionError) as raised:
        await _scale(kube_at(silent))
    assert "TimeoutError" in raised.value.message, raised.value.message
    assert "ConnectionTimeoutError" not in raised.value.message
    assert raised.value.may_have_acted


async def _post(port: int) -> TransientActionError:
    """What ``post_json`` (``http.call``'s request) to ``port`` of this host raises."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TransientActionError) as raised:
            await post_json(
                session,
                f"http://127.0.0.1:{port}/flush",
                {"service": "web"},
                what="endpoint 'flush'",
                policy=HTTP_FAST,
            )
    return raised.value


async def test_an_http_call_that_never_connected_did_not_act(black_hole: int) -> None:
    failed = await _post(black_hole)
    assert not failed.may_have_acted, failed.message
    assert failed.message.endswith("timed out connecting (nothing sent)"), failed.message


async def test_an_http_call_sent_and_never_answered_may_have_acted(silent: int) -> None:
    failed = await _post(silent)
    assert failed.message.endswith("gave up after 2 attempts: timed out"), failed.message
    assert failed.may_have_acted
