"""Who may call /api/: bearer token, basic auth, or nobody when none is configured."""

from __future__ import annotations

import base64

import pytest
import redis.asyncio
from pydantic import SecretStr
from structlog.testing import capture_logs

from receiver.config import Settings
from receiver.guards.policy import GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.http.alerts import ALERTS_PATH
from receiver.model import NamespacePolicy
from receiver.store import Store
from tests.support.http import AUTH, TOKEN, MakeClient, basic, sample

pytestmark = [pytest.mark.postgres]


async def test_missing_token_is_401_without_detail(make_client: MakeClient, store: Store) -> None:
    client = await make_client()
    response = await client.post(ALERTS_PATH, json=sample())
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await response.json() == {"error": "unauthorized"}
    assert await store.queue_depth() == 0


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer ",
        f"Token {TOKEN}",
        TOKEN,
        "Basic " + base64.b64encode(f"x:{TOKEN}".encode()).decode(),
    ],
)
async def test_wrong_token_is_401(make_client: MakeClient, header: str) -> None:
    client = await make_client()
    response = await client.post(ALERTS_PATH, json=sample(), headers={"Authorization": header})
    assert response.status == 401


async def test_basic_auth(make_client: MakeClient) -> None:
    settings = Settings(webhook_username="am", webhook_password=SecretStr("pw"))
    client = await make_client(settings=settings)
    ok = await client.post(ALERTS_PATH, json=sample(), headers=basic("am", "pw"))
    assert ok.status == 200
    for headers in (
        basic("am", "wrong"),
        basic("other", "pw"),
        basic("am", ""),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"ampw").decode()},
        AUTH,
        {},
    ):
        response = await client.post(ALERTS_PATH, json=sample(), headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Basic")


async def test_bearer_and_basic_both_accepted_when_both_configured(make_client: MakeClient) -> None:
    settings = Settings(
        webhook_token=SecretStr(TOKEN), webhook_username="am", webhook_password=SecretStr("pw")
    )
    client = await make_client(settings=settings)
    assert (await client.post(ALERTS_PATH, json=sample(), headers=AUTH)).status == 200
    assert (await client.post(ALERTS_PATH, json=sample(), headers=basic("am", "pw"))).status == 200
    denied = await client.post(ALERTS_PATH, json=sample())
    assert denied.status == 401
    assert "Bearer" in denied.headers["WWW-Authenticate"]
    assert "Basic" in denied.headers["WWW-Authenticate"]


async def test_no_auth_configured_accepts_and_warns_once(make_client: MakeClient) -> None:
    with capture_logs() as logs:
        client = await make_client(settings=Settings())
        for _ in range(2):
            assert (await client.post(ALERTS_PATH, json=sample())).status == 200
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["webhook authentication is disabled"]


async def test_every_api_route_requires_credentials(
    make_client: MakeClient, redis_client: redis.asyncio.Redis
) -> None:
    client = await make_client(guards=Guards(redis_client, NamespacePolicy(), GuardSettings()))
    api_routes = [
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    ]
    assert len(api_routes) >= 6
    for method, path in api_routes:
        response = await client.request(
            method, path.replace("{run_id}", "x"), headers={"Authorization": "Bearer wrong"}
        )
        assert response.status == 401, (method, path)
    assert not (await Guards(redis_client, NamespacePolicy()).status())["paused"]
