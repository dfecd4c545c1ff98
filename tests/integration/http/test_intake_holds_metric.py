"""Intake's holds of the worker in /metrics (receiver/priority.py ``IntakeFirst``, wired as
``serve`` wires it, ``receiver.service.intake_first``): a flood of webhooks posted over HTTP,
their commits held at a gate of a real PostgreSQL so that they are in intake at once, and the
counters read from the app's own /metrics."""

from __future__ import annotations

import asyncio
import re

import pytest

from receiver.http.alerts import ALERTS_PATH
from receiver.intake import Intake
from receiver.priority import BUSY_AT, Priority
from receiver.service import intake_first
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.support.gated_store import gated_store
from tests.support.http import AUTH, Client, MakeClient
from tests.support.payloads import alert, notification_body
from tests.support.polling import current, eventually

pytestmark = [pytest.mark.postgres]

HOLD_S = 0.3


async def _counter(client: Client, name: str) -> float:
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


async def test_a_flood_of_webhooks_counts_one_hold_and_the_seconds_it_lasted(
    make_client: MakeClient, store: Store, metrics: Metrics
) -> None:
    gated = gated_store(store)
    priority = Priority(hold_s=HOLD_S)
    first = intake_first(priority, metrics)
    intake = Intake(gated, first=first)
    client = await make_client(intake=intake)

    def post(pod: str) -> asyncio.Task[int]:
        body = notification_body(alert({"alertname": "HighMemoryUsage", "pod": pod}))

        async def one() -> int:
            return (await client.post(ALERTS_PATH, json=body, headers=AUTH)).status

        return asyncio.create_task(one())

    posted: list[asyncio.Task[int]] = []
    try:
        posted.extend(post(f"p{i}") for i in range(BUSY_AT - 1))
        await eventually(current(lambda: first.in_progress), lambda n: n == BUSY_AT - 1)
        # One short of a flood: no hold, nothing counted.
        assert await _counter(client, "remediator_intake_holds_total") == 0
        posted.append(post("last"))
        await eventually(current(lambda: first.in_progress), lambda n: n == BUSY_AT)
        assert await _counter(client, "remediator_intake_holds_total") == 1
        # Its seconds are counted when it ends, at its timer (the webhooks still wait).
        await eventually(current(lambda: priority.holding), lambda held: not held)
        assert first.in_progress == BUSY_AT
        lasted = await _counter(client, "remediator_intake_hold_seconds_total")
        assert lasted >= HOLD_S - 1e-6  # a loop runs a timer up to its clock's resolution early
        assert await _counter(client, "remediator_intake_holds_total") == 1
    finally:
        gated.gate.set()
        statuses = await asyncio.wait_for(asyncio.gather(*posted), 10)
        await intake.drain()
    assert statuses == [200] * BUSY_AT
