"""A run that reaches its admission once the service has begun to stop (``Pipeline.wind_down``,
serve's SIGTERM handler) asks no guard: its event goes back to the queue with nothing stored and
nothing taken in Redis, and the next worker admits and runs it.

Before, it was admitted (a rate slot taken, its run stored running) and only then handed back by
the execute stage, for a run whose first step would not begin there. Real PostgreSQL and Redis.
"""

from __future__ import annotations

import pytest
import redis.asyncio

from receiver.model import RunOutcome
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, MakeHarness

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULE = RESTART_WEB + "    guards: {max_runs: {count: 10, per: 1h}}\n"
LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}


async def _keys(client: redis.asyncio.Redis) -> list[str]:
    return sorted(str(key) for key in await client.keys("*"))


async def test_a_run_not_yet_admitted_when_the_service_stops_takes_nothing_and_goes_back(
    make_harness: MakeHarness, redis_client: redis.asyncio.Redis
) -> None:
    stopping = await make_harness(RULE)
    await stopping.intake.accept(notification(alert(LABELS)))
    stopping.pipeline.wind_down()
    before = await _keys(redis_client)

    assert await stopping.drain() == 0
    assert await stopping.runs() == [], "a run stored by a stopping service"
    assert await _keys(redis_client) == before, "a guard written by a stopping service"
    row = await stopping.store._pool.fetchrow("SELECT state, last_error FROM alert_events")
    assert row["state"] == "pending"
    assert "stopped before the run steps were admitted" in row["last_error"]

    # The next worker (another replica, or the next start) admits and runs it.
    following = await make_harness(RULE)
    assert await following.drain() == 1
    run = await following.only_run()
    assert run.outcome is RunOutcome.DRY_RUN
    assert await redis_client.zcard("remediator:rate:restart-web") == 1
