"""Bad bytes are never a 500, and one notification never fails another (real store, real HTTP).

U+0000 and lone surrogates are stored as U+FFFD; timestamps past the years Python holds in UTC
(year 0 included) are stored as sent, with their siblings; long alertnames and groupKeys are
stored; a notification the store still refuses fails alone, and its 500 logs no other sender's
data; a non-UTF-8 Authorization header is a 401; a store that goes away, even mid-statement, is
a 503 whose warning is not repeated for every webhook.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from io import StringIO
from typing import Any

import asyncpg
import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from receiver.config import Settings
from receiver.http.alerts import ALERTS_PATH
from receiver.http.app import create_app
from receiver.http.deps import HealthChecks
from receiver.intake import Intake
from receiver.store import HeldConnection, NewEvent, Store
from receiver.telemetry import Metrics
from tests.support.http import AUTH, TOKEN, AiohttpClient, Client, MakeClient
from tests.support.payloads import alert, notification_body
from tests.support.polling import current, eventually
from tests.support.postgres import PostgresServer, StopMode
from tests.support.rawhttp import exchange, status_of

pytestmark = [pytest.mark.postgres]

REPLACEMENT = "\ufffd"


def _alert(pod: str, **raw: Any) -> dict[str, Any]:
    """An alert of pod ``pod``; ``raw`` replaces keys as sent."""
    return alert(
        {"alertname": "KubePodNotReady", "namespace": "other", "pod": pod},
        starts_at="2026-11-30T02:00:00Z",
        annotations={"summary": f"secret-of-{pod}"},
        generator_url="http://prometheus.example:9090/graph?g0.expr=x",
        raw=raw,
    )


def _note(*alerts: dict[str, Any], **raw: Any) -> dict[str, Any]:
    return notification_body(*alerts, external_url="http://alertmanager.example:9093", raw=raw)


async def _post(client: Client, body: dict[str, Any]) -> tuple[int, Any]:
    # json.dumps escapes U+0000 and lone surrogates as \u0000 and \ud800, as a sender would.
    response = await client.post(
        ALERTS_PATH, data=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"}
    )
    return response.status, await response.json()


async def _rows(database_url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT fingerprint, labels::text AS labels, annotations::text AS annotations,
                      generator_url, group_key, receiver, status, starts_at, ends_at
               FROM alert_events"""
        )
    finally:
        await conn.close()
    return [
        {**dict(r), "labels": json.loads(r["labels"]), "annotations": json.loads(r["annotations"])}
        for r in rows
    ]


async def test_case_06_a_nul_fails_nobody_and_is_stored_replaced(
    make_client: MakeClient, database_url: str
) -> None:
    client = await make_client()
    poisoned = _alert("cart", annotations={"summary": "value read from a device: abc\x00def"})
    sibling = _alert("api")
    poison = _note(poisoned, sibling)
    innocents = [_note(_alert(f"p-{i}")) for i in range(20)]
    # As Alertmanager's retries of the poison would: at the same moment as the innocents.
    results = await asyncio.gather(
        *(_post(client, body) for body in innocents), *(_post(client, poison) for _ in range(4))
    )
    assert [status for status, _ in results] == [200] * 24
    assert sorted(answer["accepted"] for _, answer in results[20:]) == [0, 0, 0, 2]
    rows = {r["labels"]["pod"]: r for r in await _rows(database_url)}
    assert set(rows) == {f"p-{i}" for i in range(20)} | {"cart", "api"}
    assert (
        rows["cart"]["annotations"]["summary"] == f"value read from a device: abc{REPLACEMENT}def"
    )
    assert rows["cart"]["fingerprint"] == poisoned["fingerprint"]  # as sent


def _place(body: dict[str, Any], place: str, text: str) -> None:
    alert = body["alerts"][0]
    if place == "label value":
        alert["labels"]["pod"] = text
    elif place == "label name":
        alert["labels"][text] = "x"
    elif place == "annotation":
        alert["annotations"]["summary"] = text
    elif place == "generatorURL":
        alert["generatorURL"] = text
    else:
        body[place] = text


@pytest.mark.parametrize(
    "place", ["label value", "label name", "annotation", "generatorURL", "receiver", "groupKey"]
)
@pytest.mark.parametrize("char", [chr(0), chr(0xD800), chr(0xDFFF)], ids=["NUL", "D800", "DFFF"])
async def test_case_09_unstorable_characters_anywhere_are_stored_replaced(
    make_client: MakeClient, database_url: str, place: str, char: str
) -> None:
    client = await make_client()
    body = _note(_alert("p"))
    _place(body, place, f"a{char}b")
    status, answer = await _post(client, body)
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
    [row] = await _rows(database_url)
    stored = json.dumps(row, ensure_ascii=False)
    assert f"a{REPLACEMENT}b" in stored
    assert row["fingerprint"] == body["alerts"][0]["fingerprint"]


async def test_case_11_a_time_past_year_9999_in_utc_is_stored_with_its_siblings(
    make_client: MakeClient, store: Store, database_url: str
) -> None:
    """Alertmanager accepts such an endsAt or startsAt and re-sends it with its group: a 400
    lost every alert of the notification, at every re-send. Now each is stored, its text as
    sent, and reads as the last (or first) instant Python holds (receiver/alertmanager.py)."""
    client = await make_client()
    firing = _alert("d1", startsAt="2024-01-01T00:00:00Z")
    assert (await _post(client, _note(firing)))[0] == 200
    resolved = {**firing, "status": "resolved", "endsAt": "9999-12-31T23:59:59-00:01"}
    sibling = _alert("d2", startsAt="2024-01-01T00:00:00Z")
    early = _alert("d3", startsAt="0001-01-01T00:00:00+01:00")
    status, answer = await _post(client, _note(resolved, sibling, early))
    assert (status, answer) == (200, {"accepted": 3, "duplicates": 0})
    assert await store.queue_depth() == 4
    rows = await _rows(database_url)
    assert {(r["status"], r["starts_at"], r["ends_at"]) for r in rows} >= {
        ("resolved", "2024-01-01T00:00:00Z", "9999-12-31T23:59:59-00:01"),
        ("firing", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z"),
    }


async def test_a_time_of_year_0_is_stored_with_its_siblings(
    make_client: MakeClient, store: Store, database_url: str
) -> None:
    """Go writes year 0 and Alertmanager 0.35 forwards it as a source posted it, in the
    notification of the alert's whole group, at every re-send: a 400 lost its siblings for as
    long as the alert lasted. Python has no year 0; it reads as the first instant, or as the
    instant in UTC when that is in year 1 (receiver/alertmanager.py)."""
    client = await make_client()
    year_0 = _alert("y0", startsAt="0000-12-31T23:30:00-01:00")
    ended = _alert("y0-ended", status="resolved", startsAt="0000-01-01T00:00:00Z")
    ended["endsAt"] = "0000-06-01T00:00:00Z"
    sibling = _alert("y0-sibling", startsAt="2026-01-01T00:00:00Z")
    status, answer = await _post(client, _note(year_0, ended, sibling))
    assert (status, answer) == (200, {"accepted": 3, "duplicates": 0})
    assert await store.queue_depth() == 3
    rows = await _rows(database_url)
    assert {(r["labels"]["pod"], r["starts_at"], r["ends_at"]) for r in rows} == {
        ("y0", "0000-12-31T23:30:00-01:00", "0001-01-01T00:00:00Z"),
        ("y0-ended", "0000-01-01T00:00:00Z", "0000-06-01T00:00:00Z"),
        ("y0-sibling", "2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    }


async def test_a_long_alertname_and_group_key_are_accepted_and_queued(
    make_client: MakeClient, store: Store
) -> None:
    # The store indexes both by their hash (migration 0011); a 400 would lose the alert, since
    # Alertmanager does not retry one. tests/integration/test_long_keys.py takes such alerts on
    # to their runs.
    client = await make_client()
    alert = _alert("p")
    alert["labels"]["alertname"] = "A" * 3000
    status, answer = await _post(client, _note(alert, groupKey="{}:{" + "k" * 12000 + "}"))
    assert status == 200, answer
    assert await store.queue_depth() == 1


class _RefusingStore(Store):
    """The real store, with a bug: one fingerprint's labels get a NUL on their way in."""

    refuse: str

    async def insert_event_groups(
        self,
        groups: Sequence[Sequence[NewEvent]],
        *,
        timeout_s: float = 5.0,
        held: HeldConnection | None = None,
    ) -> list[tuple[int, int]]:
        bugged = [
            [
                dataclasses.replace(e, labels={**e.labels, "bug": "\x00"})
                if e.fingerprint == self.refuse
                else e
                for e in group
            ]
            for group in groups
        ]
        return await super().insert_event_groups(bugged, timeout_s=timeout_s, held=held)


async def test_a_notification_the_store_refuses_is_500_alone_and_its_log_is_its_own(
    aiohttp_client: AiohttpClient, store: Store, database_url: str
) -> None:
    out = StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
    )
    refusing = _RefusingStore(store._pool, store.dsn)
    bad = _alert("bugged")
    refusing.refuse = bad["fingerprint"]
    intake = Intake(refusing, log=log)
    app = create_app(
        settings=Settings(webhook_token=SecretStr(TOKEN)),
        intake=intake,
        metrics=Metrics(),
        health=HealthChecks(),
        runs_reader=store,
        log=log,
    )
    client = await aiohttp_client(app)
    try:
        bodies = [_note(_alert(f"p-{i}")) for i in range(10)]
        bodies.insert(5, _note(bad))
        results = await asyncio.gather(*(_post(client, body) for body in bodies))
    finally:
        await intake.drain()
    statuses = [status for status, _ in results]
    assert statuses == [200] * 5 + [500] + [200] * 5
    assert results[5][1] == {"error": "internal server error"}
    assert {r["labels"]["pod"] for r in await _rows(database_url)} == {f"p-{i}" for i in range(10)}
    logged = out.getvalue()
    assert "unhandled error" in logged
    assert "IntakeFailed" in logged
    assert "secret-of-p-" not in logged  # nothing of the other senders' alerts


_API_ROUTES = [
    ("POST", "/api/v1/alerts"),
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/runs/00000000-0000-0000-0000-000000000000"),
    ("GET", "/api/v1/guards"),
    ("PUT", "/api/v1/pause"),
    ("DELETE", "/api/v1/pause"),
    ("GET", "/api/v1/no-such-route"),
]


@pytest.mark.parametrize(("method", "path"), _API_ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer \xff",
        b"Bearer " + TOKEN.encode() + b"\xff",
        b"Basic \xff\xfe",
        b"\xed\xa0\x80",  # a UTF-8-encoded surrogate: not UTF-8
        b"Bearer \xc3\xa9",  # valid UTF-8, just not the token
    ],
)
async def test_case_09_authorization_that_is_not_utf8_is_401(
    make_client: MakeClient, method: str, path: str, authorization: bytes
) -> None:
    client = await make_client()
    port = client.server.port
    assert port is not None
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n"
    request = head.encode() + b"Authorization: " + authorization + b"\r\n\r\n{}"
    assert status_of(await exchange(port, request)) == 401


async def test_the_raw_requests_do_reach_the_handlers_with_the_right_token(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert client.server.port is not None
    body = json.dumps(_note(_alert("p"))).encode()
    request = (
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n" + body
    )
    assert status_of(await exchange(client.server.port, request)) == 200


async def test_store_down_warnings_are_rate_limited(
    make_client: MakeClient, pg_controlled: PostgresServer
) -> None:
    client = await make_client()
    with pg_controlled.stopped(mode="fast"), capture_logs() as logs:
        statuses = [(await _post(client, _note(_alert(f"p-{i}"))))[0] for i in range(6)]
    assert statuses == [503] * 6
    warnings = [e for e in logs if e["event"] == "store unavailable, notification not accepted"]
    assert len(warnings) == 1
    assert warnings[0]["not_logged_since_last"] == 0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_going_away_mid_flight_is_503_never_500(
    make_client: MakeClient, pg_controlled: PostgresServer, database_url: str, mode: StopMode
) -> None:
    client = await make_client()
    statuses: list[int] = []
    acked: list[str] = []
    done = asyncio.Event()

    async def sender(k: int) -> None:
        i = 0
        while not done.is_set():
            pod = f"s{k}-{i}"
            status, _ = await _post(client, _note(_alert(pod)))
            statuses.append(status)
            if status == 200:
                acked.append(pod)
            i += 1

    senders = [asyncio.create_task(sender(k)) for k in range(8)]
    try:
        await eventually(current(lambda: len(acked)), lambda n: n >= 50)
        stopping = asyncio.create_task(asyncio.to_thread(pg_controlled.stop, mode))
        await eventually(current(lambda: 503 in statuses))
        await asyncio.wait_for(stopping, 30)
    finally:
        done.set()
        await asyncio.gather(*senders, return_exceptions=True)
        pg_controlled.start()
    assert set(statuses) == {200, 503}, sorted(set(statuses))
    stored = {r["labels"]["pod"] for r in await _rows(database_url)}
    assert set(acked) <= stored  # every 200 was committed
