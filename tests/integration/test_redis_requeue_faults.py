"""redis.requeue_dead_letters when Redis refuses part of the move (real Redis).

A script that fails half way keeps the writes it made before the failing command: what it
took out of the dead letters must then be back at work or still dead, never in neither place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio

from remediations.base import ActionContext, Clients
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues
from remediations.redis_queue.requeue import RequeueDeadLetters, RequeueParams
from remediations.targets import Target

pytestmark = pytest.mark.redis

NOW = datetime(2026, 8, 1, 12, 0, 0, tzinfo=UTC)
REPORTS = QueueSpec(Layout.RQ, "rq:queue:reports", "rq:failed:reports")
TARGET = Target("RedisQueue", "", "jobs/reports")


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[RedisQueues]:
    created = RedisQueues("jobs", redis.asyncio.Redis.from_url(redis_url), {"reports": REPORTS})
    try:
        yield created
    finally:
        await created.close()


def context(queues: RedisQueues) -> ActionContext:
    return ActionContext("run-1", False, Clients({"redis:jobs": queues}))


async def failed_jobs(r: redis.asyncio.Redis, *ids: str) -> None:
    for i, job_id in enumerate(ids):
        await r.hset(f"rq:job:{job_id}", mapping={"status": "failed", "origin": "reports"})
        await r.zadd("rq:failed:reports", {job_id: NOW.timestamp() + 3600 + i})


async def test_rq_job_key_of_another_type_is_skipped_not_lost(queues: RedisQueues) -> None:
    """A failed id whose ``rq:job:<id>`` key is not a hash (another program's key under a
    ``job_key_prefix`` that is not RQ's): its HSET failed after its id had left the registry,
    so the id was lost, and the script stopped there. It is skipped and left, as an id whose
    job hash is gone is, and the jobs after it move."""
    r = queues.client
    await failed_jobs(r, "j-1", "j-2", "j-3")
    await r.delete("rq:job:j-2")
    await r.set("rq:job:j-2", "a string")

    result = await RequeueDeadLetters(clock=lambda: NOW).run(
        context(queues), TARGET, RequeueParams(max_messages=10)
    )

    assert result.after["jobs"] == ["j-1", "j-3"], result.message
    assert await r.zrange("rq:failed:reports", 0, -1) == [b"j-2"]
    assert await r.lrange("rq:queue:reports", 0, -1) == [b"j-1", b"j-3"]
    assert "1 failed id(s) skipped" in result.message
