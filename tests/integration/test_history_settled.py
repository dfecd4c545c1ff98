"""The history read's settling part takes, of a pair's verifying runs with a settle period, only
those whose settle period had not ended when the event arrived: the runs the engine may fail as
recurred (``engine._recurrences``), and no run whose settle period ended long ago.

Such a run stays verifying until its verify_deadline job ends it, and for good when that job is
dead or dropped (migration 0038). Its rows are set here as that leaves them.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import pytest

from receiver.model import AlertEvent, Target
from receiver.store import Store
from receiver.store.history import (
    HISTORY_PLAN_SETTINGS,
    HISTORY_SQL,
    batch_arguments,
    history_arguments,
)
from tests.support.events import alert_event
from tests.support.plans import explain_analyze, rows_read

pytestmark = pytest.mark.postgres

WEB = Target("Deployment", "shop", "web-0")
PAIR = ("restart", WEB)
STALE = 40


async def _settling(store: Store) -> tuple[str, str, datetime]:
    """``STALE`` runs of ``PAIR`` still verifying an hour after their settle period ended,
    then one whose settle period ends exactly at the firing's arrival and one that ends in five
    minutes: the ids of those two, and the arrival (the store's clock)."""
    ids = [
        await store.create_run(
            rule="restart",
            event=alert_event(fingerprint=f"{i:016x}"),
            target=WEB,
            dry_run=True,
        )
        for i in range(STALE + 2)
    ]
    arrival: datetime = await store._pool.fetchval("SELECT now()")
    await store._pool.execute(
        """UPDATE runs SET outcome = 'verifying', resolved_at = $1::timestamptz - interval '2h',
                          settle_until = $1::timestamptz - interval '1h'""",
        arrival,
    )
    edge, live = str(ids[-2]), str(ids[-1])
    await store._pool.execute(
        "UPDATE runs SET settle_until = $2 WHERE id = $1::uuid", edge, arrival
    )
    await store._pool.execute(
        "UPDATE runs SET settle_until = $2::timestamptz + interval '5 minutes' WHERE id = $1::uuid",
        live,
        arrival,
    )
    return edge, live, arrival


def _firing(arrival: datetime | None) -> AlertEvent:
    return dataclasses.replace(alert_event(10_000, fingerprint="f" * 16), received_at=arrival)


async def test_a_firing_reads_the_runs_still_settling_not_those_whose_period_ended(
    store: Store,
) -> None:
    edge, live, arrival = await _settling(store)
    event = _firing(arrival)
    history = await store.history(event, 3600, settling=[PAIR])
    # The edge is inclusive, as the engine's (received_at <= settle_until).
    assert [r.run_id for r in history.settling_runs] == [edge, live]

    # Oldest first up to the read's limit: the ended ones took the limit, and the run still
    # settling, whose recurrence this firing is, was not read.
    few = await store.history(event, 3600, settling=[PAIR], limit=2)
    assert [r.run_id for r in few.settling_runs] == [edge, live]

    # The index starts past the ended ones: the two rows returned are the rows read.
    args = batch_arguments([history_arguments(event, 3600, [], [PAIR], 1000)])
    async with store._pool.acquire() as conn, conn.transaction():
        await conn.execute(HISTORY_PLAN_SETTINGS)
        plan = await explain_analyze(conn, HISTORY_SQL, *args)
    assert rows_read(plan, "runs") <= 2, json.dumps(plan, indent=1)


async def test_with_no_arrival_every_settling_run_is_read(store: Store) -> None:
    # No arrival: the engine compares with its own clock, which the store does not know.
    await _settling(store)
    history = await store.history(_firing(None), 3600, settling=[PAIR])
    assert len(history.settling_runs) == STALE + 2
