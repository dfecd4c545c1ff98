"""POST /api/v1/alerts against the real store: accepted, duplicates, 400, 413, 503, 500, and
the alerts Alertmanager says it left out (truncatedAlerts)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from receiver.config import Settings
from receiver.http.alerts import ALERTS_PATH, LOGGED_TEXT_MAX, TRUNCATED_WARNING
from receiver.http.app import create_app
from receiver.http.deps import HealthChecks
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.support.http import AUTH, TOKEN, AiohttpClient, MakeClient, sample
from tests.support.payloads import alert, notification_body
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


async def test_a_bad_payload_names_every_problem(make_client: MakeClient, store: Store) -> None:
    payload = sample()
    good = payload["alerts"][0]
    payload["alerts"] = [good, {**good, "startsAt": "noon"}, {**good, "status": "on fire"}]
    client = await make_client()
    response = await client.post(ALERTS_PATH, json=payload, headers=AUTH)
    assert response.status == 400
    data = await response.json()
    assert (data["field"], data["error"]) == (
        data["problems"][0]["field"],
        data["problems"][0]["error"],
    )
    assert [p["field"] for p in data["problems"]] == ["alerts.1.startsAt", "alerts.2.status"]
    assert "more_problems" not in data
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


async def test_alerts_left_out_by_max_alerts_are_counted_and_logged(
    make_client: MakeClient, store: Store
) -> None:
    # As Alertmanager 0.25 and 0.35 send a group of five through a webhook_config with
    # max_alerts: 2 (notify/webhook/webhook.go: the first two alerts, truncatedAlerts 3).
    labels = {"alertname": "QueueBacklog", "namespace": "shop", "deployment": "workers"}
    group = [alert({**labels, "queue": f"q{i}"}) for i in range(2)]
    key = '{}/{alertname=~"QueueBacklog"}:{deployment="workers"}'
    truncated = notification_body(
        *group, receiver="trunc", raw={"groupKey": key, "truncatedAlerts": 3}
    )
    # A group whose key is longer than a log line should be (a route grouping by a long label),
    # and a notification that left nothing out.
    long_key = '{}:{queue="' + "x" * 5000 + '"}'
    long = notification_body(
        *group, receiver="trunc", raw={"groupKey": long_key, "truncatedAlerts": 1}
    )
    whole = notification_body(alert({**labels, "queue": "whole"}))
    client = await make_client()
    with capture_logs() as logs:
        for body in (whole, long, truncated, truncated):
            response = await client.post(ALERTS_PATH, json=body, headers=AUTH)
            assert response.status == 200
    # The alerts that did arrive are stored as ever.
    assert await store.queue_depth() == 3
    metrics = await (await client.get("/metrics")).text()
    assert "remediator_alerts_truncated_total 7.0" in metrics
    # One warning per interval, naming the receiver, the group (cut short) and the count; the
    # others are held back (the counter has them all).
    warnings = [e for e in logs if e["event"] == TRUNCATED_WARNING]
    more = len(long_key) - LOGGED_TEXT_MAX
    assert warnings == [
        {
            "event": TRUNCATED_WARNING,
            "log_level": "warning",
            "receiver": "trunc",
            "group_key": f"{long_key[:LOGGED_TEXT_MAX]}... ({more} more characters)",
            "truncated_alerts": 1,
            "received_alerts": 2,
            "not_logged_since_last": 0,
        }
    ]


async def test_the_largest_truncated_count_is_counted_as_a_float_and_logged_exactly(
    make_client: MakeClient,
) -> None:
    # truncatedAlerts is Alertmanager's uint64. A Prometheus sample is a float64, exact to
    # 2**53 only: 18446744073709551615 counts as 1.8446744073709552e19 (README, /metrics), and
    # two of them as 3.6893488147419103e+19, finite: summing the largest counts reaches inf
    # only past 1e289 notifications. The warning line keeps the exact count.
    largest = 2**64 - 1
    body = notification_body(alert({"alertname": "Many"}), raw={"truncatedAlerts": largest})
    client = await make_client()
    with capture_logs() as logs:
        for _ in range(2):
            response = await client.post(ALERTS_PATH, json=body, headers=AUTH)
            assert response.status == 200
    metrics = await (await client.get("/metrics")).text()
    assert f"remediator_alerts_truncated_total {float(2 * largest)!r}" in metrics
    (warning,) = [e for e in logs if e["event"] == TRUNCATED_WARNING]
    assert warning["truncated_alerts"] == largest
    past = notification_body(alert({"alertname": "Many"}), raw={"truncatedAlerts": 2**64})
    response = await client.post(ALERTS_PATH, json=past, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["field"] == "truncatedAlerts"
