"""/healthz, /readyz per component, /metrics, and JSON for unknown routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio
from pydantic import SecretStr
from structlog.testing import capture_logs

from receiver.config import Settings
from receiver.http.alerts import ALERTS_PATH
from receiver.http.deps import HealthChecks
from receiver.store import Store
from tests.support.http import (
    AUTH,
    TOKEN,
    AiohttpClient,
    MakeClient,
    default_settings,
    ping,
    sample,
)
from tests.support.redis import RedisServer
from tests.support.review_app import review_app

pytestmark = [pytest.mark.postgres]


def _redis_check(url: str) -> Callable[[], Awaitable[str]]:
    async def check() -> str:
        client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=1)
        try:
            await client.ping()
        finally:
            await client.aclose()
        return "ok"

    return check


async def _dry_run() -> str:
    return "dry-run (no credentials)"


async def test_healthz(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.get("/healthz")
    assert response.status == 200


async def test_readyz_reports_each_component(
    make_client: MakeClient, store: Store, redis_url: str
) -> None:
    health = HealthChecks(store=ping(store), redis=_redis_check(redis_url), kubernetes=_dry_run)
    client = await make_client(health=health)
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {
        "status": "ready",
        "components": {
            "store": {"ok": True, "detail": "ok"},
            "redis": {"ok": True, "detail": "ok"},
            "kubernetes": {"ok": True, "detail": "dry-run (no credentials)"},
        },
    }


async def test_readyz_redis_down_is_503(
    make_client: MakeClient, store: Store, redis_controlled: RedisServer, redis_url: str
) -> None:
    health = HealthChecks(store=ping(store), redis=_redis_check(redis_url), kubernetes=_dry_run)
    client = await make_client(health=health)
    redis_controlled.stop()
    try:
        response = await client.get("/readyz")
    finally:
        redis_controlled.ensure_running()
    assert response.status == 503
    data = await response.json()
    assert data["status"] == "not ready"
    assert data["components"]["redis"]["ok"] is False
    assert data["components"]["store"]["ok"] is True


async def test_readyz_check_that_hangs_times_out(
    make_client: MakeClient, store: Store, redis_controlled: RedisServer, redis_url: str
) -> None:
    settings = Settings(webhook_token=SecretStr(TOKEN), readiness_timeout_seconds=0.3)
    health = HealthChecks(store=ping(store), redis=_redis_check(redis_url))
    client = await make_client(settings=settings, health=health)
    redis_controlled.freeze()  # accepts TCP, answers nothing
    try:
        response = await client.get("/readyz")
    finally:
        redis_controlled.thaw()
    assert response.status == 503
    detail = (await response.json())["components"]["redis"]["detail"]
    assert detail == "no answer within 0.3s"


async def test_readyz_is_bounded_by_its_timeout_when_a_check_is_slow_to_stop(
    make_client: MakeClient,
) -> None:
    """A check that takes long to stop once cancelled (asyncpg waits for a frozen server to
    acknowledge its cancel) does not hold the answer past the readiness timeout."""
    release, stopped = asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(release.wait())  # the cleanup a frozen server drags out
            stopped.set()
        return "ok"

    settings = Settings(webhook_token=SecretStr(TOKEN), readiness_timeout_seconds=0.3)
    client = await make_client(settings=settings, health=HealthChecks(store=slow_to_stop))
    started = time.monotonic()
    response = await client.get("/readyz")
    assert time.monotonic() - started < 0.3 + 2.0
    assert response.status == 503
    detail = (await response.json())["components"]["store"]["detail"]
    assert detail == "no answer within 0.3s"
    assert not stopped.is_set()
    release.set()
    await asyncio.wait_for(stopped.wait(), timeout=5)


async def test_readyz_kubernetes_failure_does_not_block_intake(
    make_client: MakeClient, store: Store
) -> None:
    async def unreachable() -> str:
        raise ConnectionRefusedError("kube-apiserver refused the connection")

    client = await make_client(health=HealthChecks(store=ping(store), kubernetes=unreachable))
    response = await client.get("/readyz")
    assert response.status == 200
    kube = (await response.json())["components"]["kubernetes"]
    assert kube["ok"] is False
    assert "ConnectionRefusedError" in kube["detail"]


async def test_metrics_count_alerts_duplicates_requests_and_queue(make_client: MakeClient) -> None:
    client = await make_client()
    for _ in range(2):
        await client.post(ALERTS_PATH, json=sample(), headers=AUTH)
    await client.post(ALERTS_PATH, json=sample())  # 401
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'remediator_alerts_received_total{status="firing"} 2.0' in text
    assert "remediator_alert_duplicates_total 1.0" in text
    assert (
        'remediator_http_requests_total{code="200",method="POST",route="/api/v1/alerts"} 2.0'
        in text
    )
    assert (
        'remediator_http_requests_total{code="401",method="POST",route="/api/v1/alerts"} 1.0'
        in text
    )
    assert "remediator_queue_depth 1.0" in text
    for name in ("remediator_runs_total", "remediator_guard_refusals_total"):
        assert f"# TYPE {name} counter" in text
    assert "# TYPE remediator_action_duration_seconds histogram" in text


async def test_unknown_route_is_json_404(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.get("/nope")
    assert response.status == 404
    assert await response.json() == {"error": "Not Found"}


@pytest.mark.parametrize("path", ["/", "/alerts", "/webhook"])
async def test_a_post_no_route_takes_names_the_webhook_path_and_is_logged(
    make_client: MakeClient, path: str
) -> None:
    # Alertmanager's webhook_config with the service's address but not its path: a 404 it does
    # not retry, so every notification was lost; "Not Found" said nothing of why.
    client = await make_client()
    with capture_logs() as logs:
        for _ in range(2):
            response = await client.post(path, json=sample(), headers=AUTH)
            assert response.status == 404
            error = (await response.json())["error"]
            assert error.startswith("not found: alerts are posted to POST /api/v1/alerts")
    strays = [e for e in logs if e["event"].startswith("POST to a path no route takes")]
    assert len(strays) == 1  # a sender retrying says it once per 10 s
    assert strays[0]["path"] == path
    assert TOKEN not in repr(logs)
    assert (await client.get(path)).status == 404  # other methods: as before


@pytest.mark.parametrize("path", ["/", "/runs", "/incidents"])
async def test_a_post_to_a_page_names_the_webhook_path_and_keeps_its_405(
    aiohttp_client: AiohttpClient, store: Store, path: str
) -> None:
    # The service as served, its review pages routed: `http://remediator:9095` as a webhook URL
    # posts to `/`, a page's path, whose 405 said only "Method Not Allowed", logging nothing.
    client = await aiohttp_client(review_app(store, default_settings()))
    with capture_logs() as logs:
        response = await client.post(path, json=sample(), headers=AUTH)
        assert response.status == 405
        assert response.headers["Allow"] == "GET,HEAD"
        error = (await response.json())["error"]
        assert error == (
            "method not allowed: alerts are posted to POST /api/v1/alerts; "
            "check the webhook's URL and its path"
        )
    [stray] = [e for e in logs if e["event"].startswith("POST to a path no route takes")]
    assert stray["path"] == path
    assert TOKEN not in repr(logs)
    assert (await client.put(path, headers=AUTH)).status == 405  # other methods: as before
