"""A stream's move over a large pending list, against a real Redis.

The moving script blocks every other client of Redis while it runs. Unbounded, it walked the
whole pending list of the group in one call: 300,000 entries pending and none idle kept Redis
busy 2.5 s for a cap of 100, and 1,000,000 past Redis's 5 s busy threshold (other clients get
BUSY). Each call now examines at most ``SCAN_BUDGET`` entries, and the move calls again from
the cursor until the cap is met or the list was examined, up to ``MAX_SCAN_CALLS`` calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from remediations.base import ActionContext, Clients, Outcome
from remediations.redis_queue import requeue
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues
from remediations.redis_queue.requeue import RequeueDeadLetters, RequeueParams
from remediations.targets import Target

pytestmark = pytest.mark.redis

TARGET = Target("RedisQueue", "", "jobs/events")
FRESH = 30_000  # delivered just now: pending, not idle


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[RedisQueues]:
    client = redis.asyncio.Redis.from_url(redis_url)
    created = RedisQueues(
        "jobs", client, {"events": QueueSpec(Layout.STREAM, "events", group="workers")}
    )
    try:
        await client.xgroup_create("events", "workers", id="0", mkstream=True)
        yield created
    finally:
        await client.delete("events")
        await created.close()


async def pending_list(r: redis.asyncio.Redis, fresh: int, idle: int) -> list[str]:
    """``fresh`` entries delivered now, then ``idle`` entries an hour idle at the list's end
    (XCLAIM's IDLE sets how long ago an entry was delivered); the idle ones' ids."""
    async with r.pipeline(transaction=False) as pipe:
        for n in range(fresh + idle):
            pipe.xadd("events", {"n": str(n)})
        ids = [i.decode() for i in await pipe.execute()]
    while await r.xreadgroup("workers", "gone", {"events": ">"}, count=20_000):
        pass
    tail = ids[fresh:]
    await r.xclaim("events", "workers", "gone", 0, tail, idle=3_600_000)
    return tail


async def evals(r: redis.asyncio.Redis) -> int:
    stats = await r.info("commandstats")
    return int(stats.get("cmdstat_eval", {}).get("calls", 0))


def params(cap: int) -> RequeueParams:
    return RequeueParams.model_validate({"max_messages": cap, "min_idle": "1m"})


async def test_idle_entries_behind_a_long_pending_list_are_found_in_bounded_calls(
    queues: RedisQueues,
) -> None:
    r = queues.client
    idle = await pending_list(r, FRESH, 5)
    ctx = ActionContext("run-1", False, Clients({"redis:jobs": queues}))
    calls = await evals(r)

    result = await RequeueDeadLetters().run(ctx, TARGET, params(100))

    assert result.outcome is Outcome.OK, result.message
    assert [m["from"] for m in result.after["readded"]] == idle
    assert result.after["pending"] == FRESH
    # 30,005 pending entries at 20,000 a call: two calls, not one walking them all.
    assert await evals(r) - calls == -(-(FRESH + 5) // requeue.SCAN_BUDGET) == 2
    assert "not examined" not in result.message


async def test_a_list_longer_than_the_calls_allow_says_the_rest_was_not_examined(
    queues: RedisQueues, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = queues.client
    await pending_list(r, 2_000, 5)
    monkeypatch.setattr(requeue, "SCAN_BUDGET", 500)
    monkeypatch.setattr(requeue, "MAX_SCAN_CALLS", 2)
    ctx = ActionContext("run-1", False, Clients({"redis:jobs": queues}))

    result = await RequeueDeadLetters().run(ctx, TARGET, params(100))

    assert result.outcome is Outcome.NOOP
    assert result.message == (
        "nothing to requeue on jobs/events; stopped after examining about 1,000 pending "
        "entries, the rest not examined: run the step again for them"
    )
    assert (await r.xpending("events", "workers"))["pending"] == 2_005
