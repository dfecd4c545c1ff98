"""A reverse proxy that serves an upstream under a path prefix, as an ingress or an SSO proxy
in front of the service would: ``/review/runs`` upstream is ``/runs``.

A real aiohttp server (no mock): the browser talks to it, it talks to the service over HTTP.
It strips the prefix, keeps the Host the browser used (so the service's same-origin check sees
the browser's origin), adds X-Forwarded-For, and passes everything back unchanged: status,
Location, every Set-Cookie.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

__all__ = ["PrefixProxy", "prefix_proxy"]

_HOP = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}
)


@dataclass
class PrefixProxy:
    """``base``: the proxy's URL with the prefix (``http://127.0.0.1:N/review``)."""

    server: TestServer
    prefix: str
    upstream: str = ""

    @property
    def base(self) -> str:
        return str(self.server.make_url(self.prefix))


@pytest.fixture
async def prefix_proxy() -> AsyncIterator[PrefixProxy]:
    """A proxy serving ``proxy.upstream`` (set it before the first request) under
    ``/review``."""
    session = aiohttp.ClientSession(auto_decompress=False)
    proxy: PrefixProxy

    async def forward(request: web.Request) -> web.Response:
        url = f"{proxy.upstream}/{request.match_info['tail']}"
        if request.query_string:
            url += "?" + request.query_string
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP)
        headers["Host"] = request.host
        headers["X-Forwarded-For"] = request.remote or ""
        async with session.request(
            request.method,
            url,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            back = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP)
            return web.Response(status=upstream.status, body=body, headers=back)

    app = web.Application()
    app.router.add_route("*", "/review/{tail:.*}", forward)
    server = TestServer(app)
    await server.start_server()
    proxy = PrefixProxy(server, "/review")
    try:
        yield proxy
    finally:
        await server.close()
        await session.close()
