"""Who may call /api/: the webhook credential posts alerts and nothing else; operators' tokens
call everything else, and the audit names the operator. Every route of the real application
against every kind of credential."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import redis.asyncio
from pydantic import SecretStr
from structlog.testing import capture_logs

from receiver.config import Settings
from receiver.guards.policy import GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.http.alerts import ALERTS_PATH
from receiver.http.guards import PAUSE_PATH
from receiver.model import NamespacePolicy
from receiver.store import Store
from tests.support.http import (
    AUTH,
    OPERATOR,
    OPERATOR_NAME,
    OPERATOR_TOKEN,
    TOKEN,
    Client,
    MakeClient,
    basic,
    sample,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

BOB_TOKEN = "bob-operator-t0ken-for-tests"

# Every configured credential kind and its role (None: no valid credential at all).
CREDENTIALS: dict[str, tuple[dict[str, str], str | None]] = {
    "none": ({}, None),
    "wrong bearer": ({"Authorization": "Bearer wrong-token-0123456789"}, None),
    "empty bearer": ({"Authorization": "Bearer "}, None),
    "unknown scheme": ({"Authorization": f"Token {TOKEN}"}, None),
    "webhook bearer": (AUTH, "webhook"),
    "webhook basic": (basic("am", "pw"), "webhook"),
    "operator alice": (OPERATOR, "operator"),
    "operator bob": ({"Authorization": f"Bearer {BOB_TOKEN}"}, "operator"),
    # An operator token is a bearer token: not a basic-auth password, not a prefix.
    "operator token as basic": (basic(OPERATOR_NAME, OPERATOR_TOKEN), None),
    "operator token prefix": ({"Authorization": f"Bearer {OPERATOR_TOKEN[:-1]}"}, None),
}


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_token": SecretStr(TOKEN),
        "webhook_username": "am",
        "webhook_password": SecretStr("pw"),
        "operator_tokens": {
            OPERATOR_NAME: SecretStr(OPERATOR_TOKEN),
            "bob": SecretStr(BOB_TOKEN),
        },
    }
    values.update(overrides)
    return Settings(**values)


def _api_routes(client: Client) -> list[tuple[str, str]]:
    """(method, path) of every /api/ route the application has, a path parameter filled in,
    plus a path under /api/ that no route serves."""
    routes = sorted(
        {
            (route.method, route.resource.canonical.replace("{run_id}", "no-such-run"))
            for route in client.app.router.routes()
            if route.resource is not None
            and route.resource.canonical.startswith("/api/")
            and route.method != "HEAD"
        }
    )
    return [*routes, ("GET", "/api/v1/no-such-endpoint")]


def _body(method: str, path: str) -> dict[str, Any] | None:
    if path == ALERTS_PATH:
        return sample()
    if method == "PUT" and path == PAUSE_PATH:
        return {"reason": "route x credential test", "for": "1m"}
    return None


@pytest.fixture
async def guards(redis_client: redis.asyncio.Redis) -> Guards:
    return Guards(redis_client, NamespacePolicy(), GuardSettings())


async def test_every_route_against_every_credential(
    make_client: MakeClient, guards: Guards, store: Store
) -> None:
    client = await make_client(settings=_settings(), guards=guards)
    routes = _api_routes(client)
    assert ("POST", ALERTS_PATH) in routes
    assert len(routes) >= 7
    wrong: list[str] = []
    for method, path in routes:
        takes = "webhook" if path == ALERTS_PATH else "operator"
        for label, (headers, role) in CREDENTIALS.items():
            response = await client.request(method, path, headers=headers, json=_body(method, path))
            if role is None:
                right = response.status == 401
            elif role == takes:
                right = response.status not in (401, 403)
            else:
                right = response.status == 403
            if not right:
                wrong.append(f"{method} {path} with {label}: {response.status}")
            if response.status == 401:
                assert "WWW-Authenticate" in response.headers
            if response.status in (401, 403):
                body = await response.json()
                assert set(body) == {"error"}
                assert TOKEN not in body["error"]
                assert OPERATOR_TOKEN not in body["error"]
            # Leave the pause lifted for the next credential.
            await guards.resume()
    assert wrong == []


@pytest.mark.parametrize("path", ["/api/v2/alerts", ALERTS_PATH + "/", "/api/v1/alert"])
async def test_the_webhook_credential_on_a_mistyped_path_is_told_its_path(
    make_client: MakeClient, path: str
) -> None:
    """A webhook URL mistyped in Alertmanager's configuration: still a 403 (a 401 without a
    credential), but it names the path the credential posts to, where it said the endpoint
    takes "an operator token", which sent the sender's owner to give Alertmanager one."""
    client = await make_client(settings=_settings())
    response = await client.post(path, headers=AUTH, json=sample())
    assert response.status == 403
    error = (await response.json())["error"]
    assert f"POST {ALERTS_PATH}" in error
    assert "operator" not in error
    assert (await client.post(path, json=sample())).status == 401
    # An operator's token on the same path: the route does not exist.
    assert (await client.post(path, headers=OPERATOR, json=sample())).status == 404


async def test_a_refused_credential_changes_nothing(
    make_client: MakeClient, guards: Guards, store: Store
) -> None:
    client = await make_client(settings=_settings(), guards=guards)
    # The webhook credential cannot pause remediation...
    response = await client.put(PAUSE_PATH, json={"reason": "alertmanager says so"}, headers=AUTH)
    assert response.status == 403
    assert not (await guards.status())["paused"]
    # ...nor can an operator's token post alerts.
    response = await client.post(ALERTS_PATH, json=sample(), headers=OPERATOR)
    assert response.status == 403
    assert await store.queue_depth() == 0
    async with store._pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_pause_and_resume_are_audited_with_the_operator(
    make_client: MakeClient, guards: Guards, store: Store
) -> None:
    client = await make_client(settings=_settings(), guards=guards)
    bob = {"Authorization": f"Bearer {BOB_TOKEN}"}
    with capture_logs() as logs:
        paused = await client.put(PAUSE_PATH, json={"reason": "freeze"}, headers=OPERATOR)
        resumed = await client.delete(PAUSE_PATH, headers=bob)
    assert (paused.status, resumed.status) == (200, 200)
    async with store._pool.acquire() as conn:
        rows = await conn.fetch("SELECT kind, data FROM audit_log ORDER BY id")
    assert [(r["kind"], json.loads(r["data"])["by"]) for r in rows] == [
        ("guards.pause", OPERATOR_NAME),
        ("guards.resume", "bob"),
    ]
    assert [e["by"] for e in logs if e["event"].startswith("automation")] == [OPERATOR_NAME, "bob"]
    # Tokens never reach the log.
    assert not [e for e in logs if OPERATOR_TOKEN in str(e) or BOB_TOKEN in str(e)]


async def test_without_operators_nobody_reads_runs(make_client: MakeClient, guards: Guards) -> None:
    with capture_logs() as logs:
        client = await make_client(settings=Settings(webhook_token=SecretStr(TOKEN)), guards=guards)
    assert any("no operator tokens" in e["event"] for e in logs)
    assert (await client.get("/api/v1/runs")).status == 401
    assert (await client.get("/api/v1/runs", headers=AUTH)).status == 403
    assert (await client.post(ALERTS_PATH, json=sample(), headers=AUTH)).status == 200


async def test_operators_without_webhook_auth_keep_the_operator_routes_closed(
    make_client: MakeClient, guards: Guards
) -> None:
    settings = Settings(operator_tokens={OPERATOR_NAME: SecretStr(OPERATOR_TOKEN)})
    client = await make_client(settings=settings, guards=guards)
    assert (await client.post(ALERTS_PATH, json=sample())).status == 200  # open webhook
    assert (await client.get("/api/v1/runs")).status == 401
    assert (await client.get("/api/v1/runs", headers=OPERATOR)).status == 200


async def test_no_auth_configured_is_open_and_audits_anonymous(
    make_client: MakeClient, guards: Guards, store: Store
) -> None:
    with capture_logs() as logs:
        client = await make_client(settings=Settings(), guards=guards)
        for _ in range(2):
            assert (await client.post(ALERTS_PATH, json=sample())).status == 200
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["webhook authentication is disabled"]
    assert (await client.put(PAUSE_PATH, json={"reason": "x"})).status == 200
    async with store._pool.acquire() as conn:
        data = await conn.fetchval("SELECT data FROM audit_log WHERE kind = 'guards.pause'")
    assert json.loads(data)["by"] == "anonymous"


async def test_missing_token_is_401_without_detail(make_client: MakeClient, store: Store) -> None:
    client = await make_client()
    response = await client.post(ALERTS_PATH, json=sample())
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await response.json() == {"error": "unauthorized"}
    assert await store.queue_depth() == 0


async def test_a_refused_credential_is_logged_once_in_a_while_without_its_value(
    make_client: MakeClient,
) -> None:
    # Alertmanager's log shows the 401, not the service's: with a wrong token in its
    # configuration every notification was lost and the service said nothing.
    wrong = "not-the-webhook-t0ken"
    client = await make_client()
    with capture_logs() as logs:
        for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {}):
            response = await client.post(ALERTS_PATH, json=sample(), headers=headers)
            assert response.status == 401
    refused = [e for e in logs if e["event"] == "request refused: no valid credential"]
    assert len(refused) == 1, logs  # the sender retries: one line per 10 s, not one a request
    assert refused[0]["log_level"] == "warning"
    assert (refused[0]["role"], refused[0]["credential_sent"]) == ("webhook", False)
    assert refused[0]["path"] == ALERTS_PATH
    assert wrong not in repr(logs)


async def test_basic_auth_alone(make_client: MakeClient) -> None:
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


async def test_a_header_that_is_not_utf8_is_401_not_500(make_client: MakeClient) -> None:
    client = await make_client(settings=_settings())
    assert client.server.host is not None
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            b"GET /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xfd\r\n"
            b"Connection: close\r\n\r\n"
        )
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.split()[1] == b"401", status_line


@pytest.mark.parametrize(
    "browser",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        # Another port of the same host: another origin, the same site.
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:3000"},
        {"Origin": "https://evil.example"},  # a browser without Fetch Metadata
        {"Origin": "null"},  # a sandboxed frame, or a page with no-referrer
    ],
)
async def test_open_to_anyone_but_not_to_another_sites_page(
    make_client: MakeClient, guards: Guards, store: Store, browser: dict[str, str]
) -> None:
    """With nothing configured, anyone may call: a script, but not any page the operator's
    browser opens, whose form or fetch would post an alert that acts, or pause, with no
    credential needed. What changes nothing (a GET) it may send: it cannot read the answer."""
    client = await make_client(settings=Settings(), guards=guards)
    refused = await client.post(ALERTS_PATH, data=json.dumps(sample()), headers=browser)
    assert refused.status == 403
    assert "another site" in (await refused.json())["error"]
    assert await store.queue_depth() == 0
    assert (await client.put(PAUSE_PATH, json={"reason": "x"}, headers=browser)).status == 403
    assert not await guards.redis.exists(guards.keys.pause())
    assert (await client.get("/api/v1/runs", headers=browser)).status == 200
    # The service's own origin, a script (neither header), and Fetch Metadata's "none" (typed
    # in the address bar) are let in.
    same = {"Sec-Fetch-Site": "same-origin", "Origin": str(client.make_url("")).rstrip("/")}
    for headers in (same, {}, {"Sec-Fetch-Site": "none"}):
        assert (await client.post(ALERTS_PATH, json=sample(), headers=headers)).status == 200


async def test_json_answers_are_not_stored_nor_sniffed(make_client: MakeClient) -> None:
    """Runs, approvals and refusals are for their caller: no cache keeps them, and no browser
    reads them as anything but JSON; an answer, a refusal and a 404 alike."""
    client = await make_client()
    for response in (
        await client.get("/api/v1/runs", headers=OPERATOR),
        await client.get("/api/v1/runs"),
        await client.get("/api/v1/runs/no-such-run", headers=OPERATOR),
    ):
        assert response.headers["Cache-Control"] == "no-store", response.status
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.status
