"""POST /api/v1/alerts against the real store: accepted, duplicates, 400, 413, 503, 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from receiver.config import Settings
from receiver.http.alerts import ALERTS_PATH
from receiver.http.app import create_app
from receiver.http.deps import HealthChecks
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.support.http import AUTH, TOKEN, AiohttpClient, MakeClient, sample
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.postgres]


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
