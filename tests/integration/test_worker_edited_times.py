"""The worker on alert events whose times were edited in the database outside Python's years
(year 20000, BC, infinity): asyncpg raised OverflowError reading such a row, so the claim that
read it failed whole, again and again, and no alert of its batch (any alert) was processed.
Now the time is read (receiver.store.stored_times), the edited event alone is refused (dead,
saying why) and every other event goes on."""

from __future__ import annotations

import asyncpg
import pytest

from receiver.model import RunOutcome
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, MakeHarness
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

TIMES = {"year 20000": "20000-01-01 00:00:00+00", "BC": "0100-01-01 00:00:00+00 BC",
         "infinity": "infinity", "-infinity": "-infinity"}  # fmt: skip
NAMES = ("cart", "api", "web")


def _labels(name: str) -> dict[str, str]:
    return {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": name}


@pytest.mark.parametrize("at", TIMES.values(), ids=TIMES.keys())
async def test_an_event_whose_time_was_edited_holds_no_other_event(
    make_harness: MakeHarness, database_url: str, at: str
) -> None:
    h = await make_harness(RESTART_WEB)
    await h.intake.accept(notification(*(alert(_labels(n)) for n in NAMES)))
    conn = await asyncpg.connect(database_url)
    try:
        edited = await conn.fetchval(
            """UPDATE alert_events SET received_at = $1::text::timestamptz
               WHERE labels->>'deployment' = 'api' RETURNING id""",
            at,
        )
    finally:
        await conn.close()
    assert edited is not None
    worker = h.worker(concurrency=2, poll_interval_s=0.05)
    await worker.start()
    try:
        await eventually(h.store.queue_depth, lambda depth: depth == 0)
    finally:
        await worker.stop(2)
    runs = await h.runs()
    assert sorted((r.target.name, r.outcome) for r in runs) == [
        ("cart", RunOutcome.DRY_RUN),
        ("web", RunOutcome.DRY_RUN),
    ]
    # The edited event alone is refused, dead, saying which time and why, for an operator to
    # correct or drop; its time is listed as stored.
    assert await h.store.dead_counts() == {"events": 1, "jobs": 0}
    rows, _ = await h.store.list_events(state="dead")
    [dead] = rows
    assert dead["id"] == edited
    assert dead["last_error"].startswith(
        f"received_at cannot be read: it was edited after it was written (the stored time {at}"
        " is outside the years 1 to 9999 Python can hold)"
    )
    assert dead["received_at"].stored == at
