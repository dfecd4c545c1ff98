"""A real HTTP peer for the tests: a local aiohttp server that answers from a script and records
every request it received (what a webhook receiver, a Slack workspace or a service would see).

``answering(handler)`` is the server underneath: every method and path on a loopback port,
handed to one handler (a peer, a fault-injecting proxy, a stranger's server)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

__all__ = ["Peer", "Reply", "Seen", "answering", "peer"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``delay`` seconds pass before it is sent."""

    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Seen:
    """One request as the peer received it; ``at`` is time.monotonic() on arrival."""

    path: str
    headers: dict[str, str]
    body: Any
    at: float


class Peer:
    """Answers each path from its script in order, repeating the last reply; 200 "ok" when a
    path has no script."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.script: dict[str, list[Reply]] = {}
        self.base = ""

    def answer(self, path: str, *replies: Reply) -> str:
        """Script ``path`` and return its URL."""
        self.script[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.requests.append(Seen(request.path, dict(request.headers), body, time.monotonic()))
        replies = self.script.get(request.path) or [Reply()]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if reply.delay:
            await asyncio.sleep(reply.delay)  # the peer is slow: that is the behaviour under test
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)


@asynccontextmanager
async def answering(handler: Handler) -> AsyncIterator[str]:
    """Serve every request (any method, any path) with ``handler`` on a free loopback port
    until the block ends; its base URL, ``http://127.0.0.1:PORT``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    created = Peer()
    async with answering(created.handle) as created.base:
        yield created
