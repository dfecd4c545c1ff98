"""The two HTTP peers the end-to-end tests control: a metrics endpoint Prometheus scrapes, and a
webhook receiving the remediator's notifications.

``MetricsEndpoint`` serves the Prometheus text format from series the test sets: gauges
(``set``) and counters that grow at a rate the test sets (``set_rate``; the value at a scrape
is what has accumulated until then, as a real counter would be). ``Sink`` keeps every JSON
body POSTed to it, in order. Both are real aiohttp servers on loopback ports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = ["MetricsEndpoint", "Sink"]

Labels = tuple[tuple[str, str], ...]


def _key(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class _Series:
    value: float
    rate: float = 0.0  # per second, for counters
    since: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return self.value + self.rate * (time.monotonic() - self.since)


class MetricsEndpoint:
    """``GET /metrics``: every series set so far. Start with ``await start()``; ``url`` is the
    address to scrape (``host:port``), ``close()`` stops it."""

    def __init__(self) -> None:
        self._series: dict[str, dict[Labels, _Series]] = {}
        self._types: dict[str, str] = {}
        self._server: TestServer | None = None
        self.scrapes = 0

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """A gauge sample, served until changed or removed."""
        self._types[name] = "gauge"
        self._series.setdefault(name, {})[_key(labels)] = _Series(float(value))

    def set_rate(self, name: str, labels: Mapping[str, str], per_second: float) -> None:
        """A counter growing by ``per_second`` from now on (keeping what it counted so far)."""
        self._types[name] = "counter"
        series = self._series.setdefault(name, {})
        old = series.get(_key(labels))
        series[_key(labels)] = _Series(old.now() if old else 0.0, float(per_second))

    def remove(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Stop serving one series (or every series of ``name``): Prometheus marks it stale."""
        if labels is None:
            self._series.pop(name, None)
        else:
            self._series.get(name, {}).pop(_key(labels), None)

    def render(self) -> str:
        lines: list[str] = []
        for name, series in sorted(self._series.items()):
            lines.append(f"# TYPE {name} {self._types[name]}")
            for labels, sample in sorted(series.items()):
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{name}{{{inner}}} {sample.now():.6f}")
        return "\n".join(lines) + "\n"

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        return web.Response(text=self.render(), content_type="text/plain", charset="utf-8")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"127.0.0.1:{self._server.port}"

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()


class Sink:
    """``POST /notify``: keeps each JSON body with the time it arrived. ``url`` is the full URL
    to configure as a webhook channel."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._server: TestServer | None = None
        self._arrived = asyncio.Condition()

    async def _notify(self, request: web.Request) -> web.Response:
        body = await request.json()
        async with self._arrived:
            self.received.append(body)
            self._arrived.notify_all()
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/notify", self._notify)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.port}/notify"

    async def wait_for(
        self, what: str, accept: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """The first body received (before or after this call) that ``accept`` takes;
        AssertionError naming ``what`` and listing the titles received after ``timeout_s``."""

        def found() -> dict[str, Any] | None:
            return next((body for body in self.received if accept(body)), None)

        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(found), timeout_s)
            except TimeoutError:
                titles = [body.get("title") for body in self.received]
                raise AssertionError(
                    f"no notification {what} within {timeout_s}s; received: {titles}"
                ) from None
        body = found()
        assert body is not None
        return body

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
