"""redis.requeue_dead_letters against a real Redis, with consumers running during the move.

The property under test is conservation: every message is delivered to a consumer exactly once
(never lost, never twice) while dead letters are moved back and consumers pop concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio

from remediations.base import ActionContext, ActionRefused, Clients, Outcome
from remediations.redis_queue.queues import End, Layout, QueueSpec, RedisQueues
from remediations.redis_queue.requeue import RequeueDeadLetters, RequeueParams
from remediations.targets import Target
from tests.support.polling import current, eventually

pytestmark = pytest.mark.redis

SPECS = {
    "emails": QueueSpec(Layout.LIST, "emails", "emails:dead"),
    "celery": QueueSpec(Layout.CELERY, "celery", "celery:dead"),
    "reports": QueueSpec(Layout.RQ, "rq:queue:reports", "rq:failed:reports"),
    "events": QueueSpec(Layout.STREAM, "events", group="workers"),
}


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[RedisQueues]:
    client = redis.asyncio.Redis.from_url(redis_url)
    created = RedisQueues("jobs", client, SPECS)
    try:
        yield created
    finally:
        await created.close()


def ctx(queues: RedisQueues, *, dry_run: bool = False) -> ActionContext:
    return ActionContext("run-1", dry_run, Clients({"redis:jobs": queues}))


def params(max_messages: int, min_idle: str = "1s") -> RequeueParams:
    return RequeueParams.model_validate({"max_messages": max_messages, "min_idle": min_idle})


def target(queue: str) -> Target:
    return Target("RedisQueue", "", f"jobs/{queue}")


async def consume_list(r: Any, key: str, seen: list[str], stop: asyncio.Event) -> None:
    """A consumer: BRPOP until told to stop and the queue is empty."""
    while True:
        item = await r.brpop([key], timeout=0.05)
        if item is not None:
            seen.append(item[1].decode())
        elif stop.is_set():
            return


async def run_consumers(
    n: int, consumer: Callable[[list[str], asyncio.Event], Coroutine[Any, Any, None]]
) -> tuple[list[str], asyncio.Event, list[asyncio.Task[None]]]:
    seen: list[str] = []
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consumer(seen, stop)) for _ in range(n)]
    return seen, stop, tasks


async def test_list_moves_conserve_messages_with_consumers_running(
    queues: RedisQueues, redis_url: str
) -> None:
    r = queues.client
    dead = [f"dead-{i}" for i in range(1000)]
    live = [f"live-{i}" for i in range(300)]
    await r.lpush("emails:dead", *dead)
    await r.lpush("emails", *live)
    clients = [redis.asyncio.Redis.from_url(redis_url) for _ in range(4)]
    pool = list(clients)
    seen, stop, tasks = await run_consumers(
        4, lambda s, e: consume_list(pool.pop(), "emails", s, e)
    )
    action = RequeueDeadLetters()
    try:
        # Ten runs at once, each capped at 100, racing each other and the consumers.
        results = await asyncio.gather(
            *(action.run(ctx(queues), target("emails"), params(100)) for _ in range(10))
        )
        await eventually(lambda: r.llen("emails"), lambda n: n == 0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for client in clients:
            await client.aclose()
    assert all(res.outcome is Outcome.OK for res in results)
    assert all(res.after["moved"] <= 100 for res in results)
    assert sum(res.after["moved"] for res in results) == 1000
    assert await r.llen("emails:dead") == 0
    assert len(seen) == len(set(seen)), "a message was delivered twice"
    assert set(seen) == set(dead) | set(live), "a message was lost"


async def test_the_cap_holds_and_the_oldest_go_first(queues: RedisQueues) -> None:
    r = queues.client
    await r.lpush("emails:dead", *[f"m{i}" for i in range(50)])  # m0 is the oldest
    action = RequeueDeadLetters()

    result = await action.run(ctx(queues), target("emails"), params(20))

    assert result.outcome is Outcome.OK
    assert result.before == {"dead_letters": 50, "queue": 0}
    assert result.after == {"dead_letters": 30, "queue": 20, "moved": 20}
    # Consumers RPOP: the oldest requeued message comes out first.
    popped = [(await r.rpop("emails")).decode() for _ in range(20)]
    assert popped == [f"m{i}" for i in range(20)]


async def test_configured_ends_are_used(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    spec = QueueSpec(Layout.LIST, "q", "q:dead", pop=End.LEFT, push=End.RIGHT)
    rq = RedisQueues("jobs", client, {"q": spec})
    try:
        await client.rpush("q:dead", "a", "b", "c")  # RPUSHed: the oldest is at the left
        await client.rpush("q", "x")
        await RequeueDeadLetters().run(ctx(rq), target("q"), params(2))
        assert await client.lrange("q", 0, -1) == [b"x", b"a", b"b"]
        assert await client.lrange("q:dead", 0, -1) == [b"c"]
    finally:
        await rq.close()


async def test_celery_dead_letters_go_where_kombu_publishes(queues: RedisQueues) -> None:
    r = queues.client
    # kombu LPUSHes new messages and workers BRPOP: requeued ones queue up behind them.
    await r.lpush("celery", '{"id": "w0"}')
    await r.lpush("celery", '{"id": "w1"}')
    await r.lpush("celery:dead", '{"id": "d0"}')

    result = await RequeueDeadLetters().run(ctx(queues), target("celery"), params(10))

    assert result.after["moved"] == 1
    order = [(await r.brpop(["celery"], timeout=1))[1] for _ in range(3)]
    assert order == [b'{"id": "w0"}', b'{"id": "w1"}', b'{"id": "d0"}']


async def test_rq_failed_jobs_are_requeued_as_rq_does(queues: RedisQueues) -> None:
    r = queues.client
    for i, job_id in enumerate(["j-old", "j-mid", "j-new"]):
        await r.hset(
            f"rq:job:{job_id}",
            mapping={
                "status": "failed",
                "origin": "reports",
                "started_at": "2026-01-01T00:00:00.000000Z",
                "ended_at": "2026-01-01T00:00:01.000000Z",
                "exc_info": "Traceback ...",
                "data": "payload",
            },
        )
        await r.zadd("rq:failed:reports", {job_id: 1_900_000_000 + i})
    await r.zadd("rq:failed:reports", {"j-expired": 1_000})  # expired, and its job hash too
    now = datetime(2026, 8, 1, 12, 0, 0, 123456, tzinfo=UTC)
    action = RequeueDeadLetters(clock=lambda: now)

    result = await action.run(ctx(queues), target("reports"), params(2))

    assert result.outcome is Outcome.OK, result.message
    assert result.after["jobs"] == ["j-old", "j-mid"]
    assert "1 expired failed id(s) removed, as RQ's cleanup does" in result.message
    assert await r.lrange("rq:queue:reports", 0, -1) == [b"j-old", b"j-mid"]
    assert await r.zrange("rq:failed:reports", 0, -1) == [b"j-new"]
    job = await r.hgetall("rq:job:j-old")
    assert job[b"status"] == b"queued"
    assert job[b"enqueued_at"] == b"2026-08-01T12:00:00.123456Z"
    assert job[b"started_at"] == b""
    assert b"exc_info" not in job
    assert job[b"data"] == b"payload"
    assert await r.sismember("rq:queues", "rq:queue:reports")
    assert (await r.hgetall("rq:job:j-new"))[b"status"] == b"failed"


async def failed_job(r: Any, job_id: str, score: float) -> None:
    """A job RQ's worker failed: its hash, and its id in the failed registry at ``score``
    (when the entry expires: the failure plus ``failure_ttl``, as RQ scores it)."""
    await r.hset(f"rq:job:{job_id}", mapping={"status": "failed", "origin": "reports"})
    await r.zadd("rq:failed:reports", {job_id: score})


async def test_rq_expired_ids_at_the_head_do_not_stall_the_requeue(queues: RedisQueues) -> None:
    """150 failed ids whose entries (and job hashes) expired sort first: RQ's own
    ``FailedJobRegistry.cleanup`` drops ids whose score (expiry) has passed before it lists
    the registry. The requeue looked at the first ``limit + 100`` ids, skipped them all and
    moved nothing, on every run; it drops them as RQ does and moves the live jobs."""
    r = queues.client
    now = datetime(2026, 8, 1, 12, 0, 0, tzinfo=UTC)
    await r.zadd("rq:failed:reports", {f"gone-{i}": 1_700_000_000 + i for i in range(150)})
    for i, job_id in enumerate(["j-1", "j-2", "j-3"]):
        await failed_job(r, job_id, now.timestamp() + 3600 + i)
    await failed_job(r, "j-forever", -1)  # failure_ttl=-1: RQ scores it -1, never expires
    action = RequeueDeadLetters(clock=lambda: now)

    # Counted as rq counts them (after its cleanup), and a dry run changes nothing.
    dry = await action.run(ctx(queues, dry_run=True), target("reports"), params(10))
    assert "requeue 4 of 4 dead letters" in dry.message
    capped = await action.run(ctx(queues, dry_run=True), target("reports"), params(3))
    assert "requeue 3 of 4+ dead letters" in capped.message, capped.message
    assert await r.zcard("rq:failed:reports") == 154

    result = await action.run(ctx(queues), target("reports"), params(10))

    assert result.outcome is Outcome.OK, result.message
    assert result.before == {"dead_letters": 4, "queue": 0}
    assert result.after["jobs"] == ["j-forever", "j-1", "j-2", "j-3"]
    assert "150 expired failed id(s) removed, as RQ's cleanup does" in result.message
    assert await r.zcard("rq:failed:reports") == 0
    assert await r.lrange("rq:queue:reports", 0, -1) == [b"j-forever", b"j-1", b"j-2", b"j-3"]


async def test_rq_ids_whose_job_is_gone_are_looked_past_and_left(queues: RedisQueues) -> None:
    """150 ids not expired whose job hashes are gone anyway (evicted under a volatile
    maxmemory policy, or a ``job_key_prefix`` that is not RQ's) sort first: they are left
    where they are, as RQ leaves them until they expire, and the jobs behind them move."""
    r = queues.client
    now = datetime(2026, 8, 1, 12, 0, 0, tzinfo=UTC)
    future = now.timestamp() + 3600
    await r.zadd("rq:failed:reports", {f"evicted-{i}": future + i for i in range(150)})
    await failed_job(r, "j-1", future + 1000)
    await failed_job(r, "j-2", future + 1001)
    action = RequeueDeadLetters(clock=lambda: now)

    # The dry run says what the live run then does: 2 jobs, not the registry's 152 ids (it
    # said "requeue 10 of 152+").
    dry = await action.run(ctx(queues, dry_run=True), target("reports"), params(10))
    assert "requeue 2 of 2 dead letters" in dry.message, dry.message
    assert "150 failed id(s) would be skipped" in dry.message
    assert await r.zcard("rq:failed:reports") == 152

    result = await action.run(ctx(queues), target("reports"), params(10))

    assert result.after["jobs"] == ["j-1", "j-2"]
    assert "150 failed id(s) skipped" in result.message
    assert await r.zcard("rq:failed:reports") == 150
    assert await r.lrange("rq:queue:reports", 0, -1) == [b"j-1", b"j-2"]


async def test_stream_reclaim_conserves_entries_with_consumers_running(
    queues: RedisQueues, redis_url: str
) -> None:
    r = queues.client
    await r.xgroup_create("events", "workers", id="0", mkstream=True)
    for n in range(200):
        await r.xadd("events", {"n": str(n)})
    # A consumer takes 100 entries and dies without acknowledging them.
    await r.xreadgroup("workers", "dead-consumer", {"events": ">"}, count=100)

    clients = [redis.asyncio.Redis.from_url(redis_url) for _ in range(3)]

    async def consume(seen: list[str], stop: asyncio.Event) -> None:
        c: Any = clients.pop()
        name = f"live-{len(clients)}"
        while True:
            reply = await c.xreadgroup("workers", name, {"events": ">"}, count=7, block=50)
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    seen.append(fields[b"n"].decode())
                    await c.xack("events", "workers", entry_id)
            if not reply and stop.is_set():
                await c.aclose()
                return

    seen, stop, tasks = await run_consumers(3, consume)
    action = RequeueDeadLetters()
    try:
        # All 100 idle past min_idle (1s) before the runs: then each run's cap decides.
        await eventually(
            lambda: r.xpending_range("events", "workers", min="-", max="+", count=100, idle=1000),
            lambda idle: len(idle) == 100,
        )
        # Two runs at once, capped at 60 each: together they take all 100, none twice.
        first, second = await asyncio.gather(
            action.run(ctx(queues), target("events"), params(60)),
            action.run(ctx(queues), target("events"), params(60)),
        )

        async def pending() -> int:
            return int((await r.xpending("events", "workers"))["pending"])

        await eventually(current(lambda: len(seen)), lambda n: n == 200)
        await eventually(pending, lambda n: n == 0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert sorted([first.after["moved"], second.after["moved"]]) == [40, 60]
    assert len(seen) == len(set(seen)), "an entry was delivered twice"
    assert set(seen) == {str(n) for n in range(200)}, "an entry was lost"
    consumers = {c["name"] for c in await r.xinfo_consumers("events", "workers")}
    assert b"alert-remediator" not in consumers
    assert "alert-remediator" not in consumers


async def test_stream_spares_entries_not_yet_idle(queues: RedisQueues) -> None:
    r = queues.client
    await r.xgroup_create("events", "workers", id="0", mkstream=True)
    await r.xadd("events", {"n": "1"})
    await r.xreadgroup("workers", "busy", {"events": ">"}, count=1)

    result = await RequeueDeadLetters().run(ctx(queues), target("events"), params(10, "1h"))

    assert result.outcome is Outcome.NOOP
    assert (await r.xpending("events", "workers"))["pending"] == 1


async def test_dry_run_counts_and_moves_nothing(queues: RedisQueues) -> None:
    r = queues.client
    await r.lpush("emails:dead", *[f"m{i}" for i in range(5)])

    result = await RequeueDeadLetters().run(ctx(queues, dry_run=True), target("emails"), params(3))

    assert result.outcome is Outcome.DRY_RUN
    assert "requeue 3 of 5+" in result.message
    assert await r.llen("emails:dead") == 5
    assert await r.llen("emails") == 0


async def test_an_unconfigured_queue_is_refused(queues: RedisQueues) -> None:
    with pytest.raises(ActionRefused, match="no queue 'nope' is configured"):
        await RequeueDeadLetters().run(ctx(queues), target("nope"), params(3))


async def test_a_missing_group_is_a_refusal_naming_it(queues: RedisQueues) -> None:
    await queues.client.xadd("events", {"n": "1"})
    with pytest.raises(ActionRefused, match="NOGROUP"):
        await RequeueDeadLetters().run(ctx(queues), target("events"), params(3))
