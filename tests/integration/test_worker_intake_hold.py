"""Intake's hold in a real worker over a real PostgreSQL (receiver/priority.py, ``IntakeFirst``):
while a flood of webhooks holds the worker back, the events of an alert name with others in
progress wait at their next call; one alone in its name (no part of the flood) goes on."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from receiver.model import AlertEvent, Disposition
from receiver.priority import IntakeFirst, Priority
from receiver.store import Store
from receiver.worker import Worker
from tests.support.events import new_event
from tests.support.polling import current, eventually

pytestmark = pytest.mark.postgres


async def test_in_a_flood_only_an_alert_name_alone_in_progress_goes_on(store: Store) -> None:
    flood = [new_event(f"{i:016x}") for i in range(4)]  # one name, four alerts
    await store.insert_events([*flood, new_event("f" * 16, alertname="QueueBacklog")])
    priority = Priority(hold_s=60)
    priority.hold(IntakeFirst.KEY, soft=True)  # as intake does in a flood
    reached: list[str] = []
    passed: list[str] = []

    async def process(event: AlertEvent) -> Disposition:
        reached.append(event.alertname)
        await priority.turn()
        passed.append(event.alertname)
        return Disposition.done()

    worker = Worker(
        store,
        process,
        owner="w",
        concurrency=8,
        lease_s=30,
        poll_interval_s=0.1,
        log=structlog.get_logger("test.intake_hold"),
        priority=priority,
    )
    async with worker:
        await eventually(current(lambda: len(reached)), lambda n: n == 5, what="five claimed")
        await eventually(current(lambda: passed), lambda p: p == ["QueueBacklog"])
        for _ in range(3):
            await asyncio.sleep(0)  # every held event has had its chance to pass
        assert passed == ["QueueBacklog"]
        priority.release(IntakeFirst.KEY)
        await eventually(current(lambda: len(passed)), lambda n: n == 5, what="the flood's turn")
        await eventually(current(lambda: worker.processed), lambda n: n == 5)
    assert sorted(passed) == ["HighMemoryUsage"] * 4 + ["QueueBacklog"]
