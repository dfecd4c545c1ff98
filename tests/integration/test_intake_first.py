"""Webhooks first, through intake and a real PostgreSQL (receiver/priority.py, ``IntakeFirst``):
the notifications in progress are those not yet answered, stored or not, and a flood of them
holds the worker's events back while it lasts."""

from __future__ import annotations

import asyncio

import pytest

from receiver.alertmanager import Notification
from receiver.intake import Intake, IntakeResult
from receiver.priority import IntakeFirst, Priority
from receiver.store import Store, StoreUnavailable
from tests.support import payloads
from tests.support.gated_store import gated_store
from tests.support.polling import current, eventually

pytestmark = pytest.mark.postgres


def _one(seed: str) -> Notification:
    return payloads.notification(
        payloads.alert({"alertname": "HighMemoryUsage", "namespace": "shop", "pod": seed})
    )


async def test_notifications_waiting_for_their_commit_hold_the_worker_back(store: Store) -> None:
    gated = gated_store(store)
    priority = Priority(hold_s=60)
    first = IntakeFirst(priority, busy_at=3)
    intake = Intake(gated, first=first)
    waiting = [asyncio.create_task(intake.accept(_one(f"p{i}"))) for i in range(2)]
    await eventually(current(lambda: first.in_progress), lambda n: n == 2)
    assert (first.holds, priority.holding) == (0, False)  # two: not a flood
    waiting.append(asyncio.create_task(intake.accept(_one("p2"))))
    await eventually(current(lambda: first.in_progress), lambda n: n == 3)
    assert (first.holds, priority.holding) == (1, True)
    worker_event = asyncio.create_task(priority.turn())  # a worker's event at its next call
    gated.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 5) == [IntakeResult(1, 0)] * 3
    assert first.in_progress == 0
    assert not worker_event.done()  # the hold lasts its hold_s, answered or not
    priority.release(IntakeFirst.KEY)
    await asyncio.wait_for(worker_event, 5)


async def test_a_notification_answered_503_is_no_longer_in_progress(store: Store) -> None:
    gated = gated_store(store)
    first = IntakeFirst(Priority(hold_s=60), busy_at=1)
    # Not committed within the intake timeout: answered "unavailable" while its write waits.
    intake = Intake(gated, timeout_s=0.2, first=first)
    with pytest.raises(StoreUnavailable):
        await intake.accept(_one("late"))
    assert (first.in_progress, first.holds) == (0, 1)
    gated.gate.set()
    await intake.drain()
