"""The HTTP edge against the real store: auth, limits, status codes, readiness, metrics, runs."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis.asyncio
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from structlog.testing import capture_logs

import receiver
from receiver.app import (
    ALERTS_PATH,
    GUARDS_PATH,
    PAUSE_PATH,
    RUNS_PATH,
    HealthChecks,
    create_app,
)
from receiver.config import Settings
from receiver.guards import AdmissionRequest, Guards, GuardSettings
from receiver.intake import Intake
from receiver.model import AlertEvent, GuardSpec, NamespacePolicy, RunOutcome, Status, Target
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.support.postgres import PostgresServer
from tests.support.redis import RedisServer
from tests.support.servers import server_missing

pytestmark = [pytest.mark.postgres]

TOKEN = "t0ken-for-tests"
SAMPLE = Path(receiver.__file__).parent / "samples" / "high-memory.json"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


class MakeClient(Protocol):
    async def __call__(
        self,
        *,
        settings: Settings | None = None,
        health: HealthChecks | None = None,
        intake: Any = None,
        guards: Any = None,
    ) -> Client: ...


def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text())
    return data


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def intake(store: Store) -> AsyncIterator[Intake]:
    created = Intake(store)
    try:
        yield created
    finally:
        await created.drain()


@pytest.fixture
async def make_client(
    aiohttp_client: AiohttpClient, store: Store, intake: Intake, metrics: Metrics
) -> MakeClient:
    """A factory: a test client around create_app with the real Intake and Store."""

    real_intake = intake

    async def make(
        *,
        settings: Settings | None = None,
        health: HealthChecks | None = None,
        intake: Any = None,
        guards: Any = None,
    ) -> Client:
        metrics.track_queue_depth(store.queue_depth)
        app = create_app(
            settings=settings or Settings(webhook_token=SecretStr(TOKEN)),
            intake=intake or real_intake,
            metrics=metrics,
            health=health or HealthChecks(store=_ping(store)),
            runs_reader=store,
            log=structlog.get_logger("test"),
            guards=guards,
            audit=store.append_audit,
        )
        return await aiohttp_client(app)

    return make


def _ping(store: Store) -> Callable[[], Awaitable[str]]:
    async def check() -> str:
        await store.ping()
        return "ok"

    return check


# -- authentication ------------------------------------------------------------------------------


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


# -- intake --------------------------------------------------------------------------------------


async def test_accepts_then_counts_duplicates(make_client: MakeClient, store: Store) -> None:
    client = await make_client()
    first = await client.post(ALERTS_PATH, json=sample(), headers=AUTH)
    assert first.status == 200
    assert await first.json() == {"accepted": 1, "duplicates": 0}
    again = await client.post(ALERTS_PATH, json=sample(), headers=AUTH)
    assert await again.json() == {"accepted": 0, "duplicates": 1}
    # 200 came after the commit: the event is in the database now.
    assert await store.queue_depth() == 1


async def test_many_alerts_one_notification(make_client: MakeClient) -> None:
    payload = sample()
    alert = payload["alerts"][0]
    payload["alerts"] = [
        {**alert, "status": "resolved", "endsAt": "2024-05-27T07:30:00Z"},
        alert,
    ]
    client = await make_client()
    response = await client.post(ALERTS_PATH, json=payload, headers=AUTH)
    assert await response.json() == {"accepted": 2, "duplicates": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        (b"\xff\xfe", "body"),
        ("version3", "version"),
        ("bad-starts-at", "alerts.0.startsAt"),
        ("no-alerts", "alerts"),
    ],
)
async def test_bad_payload_is_400_naming_the_field(
    make_client: MakeClient, store: Store, body: bytes | str, field: str
) -> None:
    if isinstance(body, str):
        payload = sample()
        if body == "version3":
            payload["version"] = "3"
        elif body == "bad-starts-at":
            payload["alerts"][0]["startsAt"] = "yesterday at noon"
        else:
            del payload["alerts"]
        body = json.dumps(payload).encode()
    client = await make_client()
    response = await client.post(
        ALERTS_PATH, data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 400
    data = await response.json()
    assert data["field"] == field
    assert data["error"]
    assert await store.queue_depth() == 0


async def test_body_over_limit_is_413(make_client: MakeClient, store: Store) -> None:
    client = await make_client(
        settings=Settings(webhook_token=SecretStr(TOKEN), max_body_bytes=2048)
    )
    payload = sample()
    payload["alerts"][0]["annotations"]["description"] = "x" * 4096
    response = await client.post(ALERTS_PATH, json=payload, headers=AUTH)
    assert response.status == 413
    assert await response.json() == {"error": "body exceeds 2048 bytes"}

    # Chunked, without Content-Length: the limit holds while reading.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 1024

    chunked = await client.post(ALERTS_PATH, data=chunks(), headers=AUTH)
    assert chunked.status == 413
    assert await chunked.json() == {"error": "body exceeds 2048 bytes"}
    assert await store.queue_depth() == 0


async def test_default_limit_is_above_aiohttp_default(make_client: MakeClient) -> None:
    payload = sample()
    alert = payload["alerts"][0]
    # About 2 MiB of alerts: above aiohttp's 1 MiB default, under our 16 MiB.
    payload["alerts"] = [
        {**alert, "labels": {**alert["labels"], "pod": f"web-{i}"}, "fingerprint": f"{i:016x}"}
        for i in range(4000)
    ]
    for a in payload["alerts"]:
        a["annotations"] = {"description": "y" * 400}
    client = await make_client()
    body = json.dumps(payload).encode()
    assert len(body) > 1024 * 1024
    response = await client.post(
        ALERTS_PATH, data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 200
    assert (await response.json())["accepted"] == 4000


async def test_store_down_is_503_and_never_429(
    make_client: MakeClient, pg_controlled: PostgresServer, store: Store
) -> None:
    client = await make_client()
    with pg_controlled.stopped(mode="fast"):
        response = await client.post(ALERTS_PATH, json=sample(), headers=AUTH)
        assert response.status == 503
        assert await response.json() == {"error": "store unavailable"}
        ready = await client.get("/readyz")
        assert ready.status == 503
        components = (await ready.json())["components"]
        assert components["store"]["ok"] is False


async def test_unexpected_error_is_500_without_trace(
    aiohttp_client: AiohttpClient, store: Store, metrics: Metrics
) -> None:
    class Broken:
        async def accept(self, notification: Any) -> Any:
            raise RuntimeError("secret internals at /srv/app.py line 3")

    app = create_app(
        settings=Settings(webhook_token=SecretStr(TOKEN)),
        intake=Broken(),
        metrics=metrics,
        health=HealthChecks(),
        runs_reader=store,
        log=structlog.get_logger("test"),
    )
    client = await aiohttp_client(app)
    with capture_logs() as logs:
        response = await client.post(ALERTS_PATH, json=sample(), headers=AUTH)
    assert response.status == 500
    text = await response.text()
    assert json.loads(text) == {"error": "internal server error"}
    assert "secret" not in text
    assert any(e["event"] == "unhandled error" and e.get("exc_info") for e in logs)


# -- health, readiness, metrics ---------------------------------------------------------------


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
    health = HealthChecks(store=_ping(store), redis=_redis_check(redis_url), kubernetes=_dry_run)
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
    make_client: MakeClient, store: Store, redis_server: RedisServer, redis_url: str
) -> None:
    health = HealthChecks(store=_ping(store), redis=_redis_check(redis_url), kubernetes=_dry_run)
    client = await make_client(health=health)
    redis_server.stop()
    try:
        response = await client.get("/readyz")
    finally:
        redis_server.ensure_running()
    assert response.status == 503
    data = await response.json()
    assert data["status"] == "not ready"
    assert data["components"]["redis"]["ok"] is False
    assert data["components"]["store"]["ok"] is True


async def test_readyz_check_that_hangs_times_out(
    make_client: MakeClient, store: Store, redis_server: RedisServer, redis_url: str
) -> None:
    settings = Settings(webhook_token=SecretStr(TOKEN), readiness_timeout_seconds=0.3)
    health = HealthChecks(store=_ping(store), redis=_redis_check(redis_url))
    client = await make_client(settings=settings, health=health)
    redis_server.freeze()  # accepts TCP, answers nothing
    try:
        response = await client.get("/readyz")
    finally:
        redis_server.thaw()
    assert response.status == 503
    detail = (await response.json())["components"]["redis"]["detail"]
    assert detail == "no answer within 0.3s"


async def test_readyz_kubernetes_failure_does_not_block_intake(
    make_client: MakeClient, store: Store
) -> None:
    async def unreachable() -> str:
        raise ConnectionRefusedError("kube-apiserver refused the connection")

    client = await make_client(health=HealthChecks(store=_ping(store), kubernetes=unreachable))
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


# -- runs API ------------------------------------------------------------------------------------


def _event(n: int, alertname: str = "HighMemoryUsage") -> AlertEvent:
    return AlertEvent(
        id=n,
        fingerprint=f"{n:016x}",
        starts_at=f"2024-05-27T07:{n:02d}:00Z",
        status=Status.FIRING,
        labels={"alertname": alertname, "namespace": "demo"},
        annotations={},
    )


@pytest.fixture
async def three_runs(store: Store) -> list[str]:
    ids = []
    specs = [
        ("restart-on-high-memory", "HighMemoryUsage", Target("Deployment", "demo", "web")),
        ("restart-on-high-memory", "HighMemoryUsage", Target("Deployment", "demo", "api")),
        ("scale-on-backlog", "QueueBacklog", Target("Deployment", "demo", "worker")),
    ]
    for n, (rule, alertname, target) in enumerate(specs, start=1):
        run_id = await store.create_run(
            rule=rule, event=_event(n, alertname), target=target, dry_run=True
        )
        assert run_id is not None
        ids.append(run_id)
    await store.set_run_outcome(ids[2], RunOutcome.DRY_RUN)
    return ids


async def _runs(client: Client, query: str = "") -> tuple[int, dict[str, Any]]:
    response = await client.get(f"{RUNS_PATH}{query}", headers=AUTH)
    data: dict[str, Any] = await response.json()
    return response.status, data


async def test_runs_lists_newest_first(make_client: MakeClient, three_runs: list[str]) -> None:
    client = await make_client()
    status, data = await _runs(client)
    assert status == 200
    assert [r["id"] for r in data["runs"]] == list(reversed(three_runs))
    assert data["next_cursor"] is None
    first = data["runs"][0]
    assert first["target"] == {"kind": "Deployment", "namespace": "demo", "name": "worker"}
    assert first["outcome"] == "dry_run"


async def test_runs_filters(make_client: MakeClient, three_runs: list[str]) -> None:
    client = await make_client()
    cases = {
        "?rule=restart-on-high-memory": [three_runs[1], three_runs[0]],
        "?alertname=QueueBacklog": [three_runs[2]],
        "?target=Deployment/demo/api": [three_runs[1]],
        "?outcome=dry_run": [three_runs[2]],
        "?outcome=pending&rule=restart-on-high-memory": [three_runs[1], three_runs[0]],
        "?since=1h": list(reversed(three_runs)),
        "?since=2999-01-01T00:00:00Z": [],
        "?rule=unknown-rule": [],
    }
    for query, expected in cases.items():
        status, data = await _runs(client, query)
        assert status == 200, (query, data)
        assert [r["id"] for r in data["runs"]] == expected, query


async def test_runs_pagination(make_client: MakeClient, three_runs: list[str]) -> None:
    client = await make_client()
    status, page1 = await _runs(client, "?limit=2")
    assert status == 200
    assert [r["id"] for r in page1["runs"]] == [three_runs[2], three_runs[1]]
    assert page1["next_cursor"]
    status, page2 = await _runs(client, f"?limit=2&cursor={page1['next_cursor']}")
    assert [r["id"] for r in page2["runs"]] == [three_runs[0]]
    assert page2["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?limit=0", "limit"),
        ("?limit=501", "limit"),
        ("?limit=ten", "limit"),
        ("?outcome=great", "outcome"),
        ("?since=yesterday", "since"),
        ("?since=2024-05-27T07:00:00", "since"),
        ("?target=web", "target"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?rule=", "rule"),
        ("?colour=blue", "colour"),
    ],
)
async def test_runs_bad_filter_is_400_naming_it(
    make_client: MakeClient, query: str, parameter: str
) -> None:
    client = await make_client()
    status, data = await _runs(client, query)
    assert status == 400
    assert data["parameter"] == parameter
    assert data["error"]


async def test_runs_needs_auth(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.get(RUNS_PATH)
    assert response.status == 401


async def test_runs_since_is_relative_to_now(
    make_client: MakeClient, three_runs: list[str]
) -> None:
    client = await make_client()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    status, data = await _runs(client, f"?since={past.replace('+', '%2B')}")
    assert status == 200
    assert len(data["runs"]) == 3


async def test_cli_runs_reads_the_api(make_client: MakeClient, three_runs: list[str]) -> None:
    from click.testing import CliRunner

    from receiver.cli import main

    client = await make_client()
    url = str(client.make_url("/"))
    env = {"REMEDIATOR_WEBHOOK_TOKEN": TOKEN}
    # The command runs its own event loop, so it runs in a thread while this loop serves.
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["runs", "--url", url, "--rule", "scale-on-backlog"], env=env
    )
    assert result.exit_code == 0, result.output
    assert three_runs[2] in result.stdout
    assert "Deployment/demo/worker" in result.stdout
    assert three_runs[0] not in result.stdout

    as_json = await asyncio.to_thread(
        CliRunner().invoke, main, ["runs", "--url", url, "--limit", "2", "--json"], env=env
    )
    assert as_json.exit_code == 0, as_json.output
    assert len(json.loads(as_json.stdout)["runs"]) == 2

    bad = await asyncio.to_thread(
        CliRunner().invoke, main, ["runs", "--url", url, "--limit", "0"], env=env
    )
    assert bad.exit_code == 1
    assert "HTTP 400 (limit)" in bad.stderr

    denied = await asyncio.to_thread(CliRunner().invoke, main, ["runs", "--url", url], env={})
    assert denied.exit_code == 1
    assert "HTTP 401" in denied.stderr


async def test_one_run_with_its_steps_and_audit_trail(
    make_client: MakeClient, store: Store, three_runs: list[str]
) -> None:
    run_id = three_runs[0]
    await store.record_step(run_id, idx=0, action="kubernetes.rollout_restart", outcome="ok",
                            params={}, message="rollout restart Deployment demo/web",
                            before={"restartedAt": None}, after={"restartedAt": "now"})
    client = await make_client()

    response = await client.get(f"{RUNS_PATH}/{run_id}", headers=AUTH)
    assert response.status == 200
    data = await response.json()
    assert data["run"]["id"] == run_id
    assert [(s["action"], s["outcome"], s["after"]) for s in data["run"]["steps"]] == [
        ("kubernetes.rollout_restart", "ok", {"restartedAt": "now"})]
    assert data["audit"], "every change of a run is in the audit log"
    assert {entry["run_id"] for entry in data["audit"]} == {run_id}

    # The list does not pretend a run had no steps: it simply does not carry them.
    status, page = await _runs(client)
    assert status == 200
    assert all("steps" not in row for row in page["runs"])


async def test_one_run_unknown_or_malformed_is_404_and_needs_auth(
    make_client: MakeClient, three_runs: list[str]
) -> None:
    client = await make_client()
    for run_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = await client.get(f"{RUNS_PATH}/{run_id}", headers=AUTH)
        assert response.status == 404
        assert run_id in (await response.json())["error"]
    response = await client.get(f"{RUNS_PATH}/{three_runs[0]}")
    assert response.status == 401


# -- the kill switch -------------------------------------------------------------------------


async def test_pause_refuses_every_run_until_resume_and_is_audited(
    make_client: MakeClient, redis_client: redis.asyncio.Redis, store: Store
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    request = AdmissionRequest(run_id="r1", rule="any-rule",
                               target=Target("Deployment", "demo", "web"), disruptive=True,
                               spec=GuardSpec())

    response = await client.put(PAUSE_PATH, json={"reason": "incident 42", "for": "30m"},
                                headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["paused"] is True
    assert body["until"] is not None
    refused = await guards.admit(request)
    assert refused.refusal is not None
    assert refused.refusal.guard == "pause"
    assert "incident 42" in refused.refusal.reason

    response = await client.get(GUARDS_PATH, headers=AUTH)
    assert response.status == 200
    assert (await response.json())["paused"]

    response = await client.delete(PAUSE_PATH, headers=AUTH)
    assert response.status == 200
    assert (await guards.admit(request)).admitted

    async with store._pool.acquire() as conn:
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM audit_log ORDER BY id")]
    assert kinds == ["guards.pause", "guards.resume"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": "  "}, "reason"),
        ({"reason": "x", "for": "soon"}, "for"),
        ({"reason": "x", "for": 30}, "for"),
        ({"reason": "x", "for": "8d"}, "for"),
        ([], "body"),
    ],
)
async def test_bad_pause_requests_are_400_naming_the_field(
    make_client: MakeClient, redis_client: redis.asyncio.Redis, body: Any, field: str
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    response = await client.put(PAUSE_PATH, json=body, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["field"] == field
    assert not (await guards.status())["paused"]


async def test_pause_needs_auth_and_redis(
    make_client: MakeClient, redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings(timeout_s=1.0))
    client = await make_client(guards=guards)
    response = await client.put(PAUSE_PATH, json={"reason": "x"})
    assert response.status == 401
    if not redis_server.managed:
        server_missing("a Redis server the tests may stop")
    redis_server.stop()
    try:
        response = await client.put(PAUSE_PATH, json={"reason": "x"}, headers=AUTH)
        assert response.status == 503
    finally:
        redis_server.start()


async def test_cli_pause_resume_and_status(
    make_client: MakeClient, redis_client: redis.asyncio.Redis
) -> None:
    from click.testing import CliRunner

    from receiver.cli import main

    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    url = str(client.make_url("/"))
    env = {"REMEDIATOR_WEBHOOK_TOKEN": TOKEN}

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, main, [*args, "--url", url], env=env)

    paused = await cli("pause", "--reason", "db failover", "--for", "1h")
    assert paused.exit_code == 0, paused.output
    assert "automation paused until" in paused.stdout
    assert (await guards.status())["pause"]["reason"] == "db failover"

    shown = await cli("status")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["paused"] is True

    bad = await cli("pause", "--reason", "x", "--for", "forever")
    assert bad.exit_code == 1
    assert "HTTP 400 (for)" in bad.stderr

    resumed = await cli("resume")
    assert resumed.exit_code == 0, resumed.output
    assert not (await guards.status())["paused"]


async def test_every_api_route_requires_credentials(
    make_client: MakeClient, redis_client: redis.asyncio.Redis
) -> None:
    client = await make_client(guards=Guards(redis_client, NamespacePolicy(), GuardSettings()))
    api_routes = [
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    ]
    assert len(api_routes) >= 6
    for method, path in api_routes:
        response = await client.request(method, path.replace("{run_id}", "x"),
                                        headers={"Authorization": "Bearer wrong"})
        assert response.status == 401, (method, path)
    assert not (await Guards(redis_client, NamespacePolicy()).status())["paused"]
