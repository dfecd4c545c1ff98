"""``/healthz`` (the process answers), ``/readyz`` (the components it needs answer) and
``/metrics`` (Prometheus). Open without credentials, for probes and scrapers."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from receiver.deadlines import answer_within
from receiver.http.deps import HEALTH, METRICS, SETTINGS, Check
from receiver.http.responses import json_response

__all__ = ["healthz", "metrics_handler", "readyz"]


async def healthz(request: web.Request) -> web.Response:
    """Always 200: the process serves HTTP."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Every component's check, run together, each within the readiness timeout (seconds),
    which bounds the answer too: a check still running then is not ok, however long it takes
    to stop. 200 when every required component is ok, else 503; the body details each."""
    timeout = request.app[SETTINGS].readiness_timeout_seconds
    health = request.app[HEALTH]

    async def run(name: str, check: Check) -> tuple[str, dict[str, Any]]:
        try:
            detail = await answer_within(check(), timeout)
        except TimeoutError:
            return name, {"ok": False, "detail": f"no answer within {timeout:g}s"}
        except Exception as exc:
            return name, {"ok": False, "detail": _describe_error(exc)}
        return name, {"ok": True, "detail": detail or "ok"}

    results = await asyncio.gather(*(run(name, check) for name, check in health.items()))
    components = dict(results)
    ready = all(components[name]["ok"] for name in health.required if name in components)
    return json_response(
        {"status": "ready" if ready else "not ready", "components": components},
        200 if ready else 503,
    )


async def metrics_handler(request: web.Request) -> web.Response:
    """The Prometheus exposition, refreshed first (queue depth is read at scrape time)."""
    metrics = request.app[METRICS]
    await metrics.refresh()
    body, content_type = metrics.render()
    response = web.Response(body=body)
    # prometheus_client's content type carries parameters aiohttp will not take as content_type.
    response.headers["Content-Type"] = content_type
    return response


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text}"[:200] if text else name
