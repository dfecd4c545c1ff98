"""redis.requeue_dead_letters when Redis refuses the move, or part of it (real Redis, and a
real three-master Redis Cluster).

A script that fails half way keeps the writes it made before the failing command: what it
took out of the dead letters must then be back at work or still dead, never in neither place.
A command a cluster's node declines (CROSSSLOT, MOVED) never ran: the step says nothing moved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio
from redis.crc import key_slot

from remediations.base import ActionContext, ActionRefused, Clients, Outcome
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues
from remediations.redis_queue.requeue import RequeueDeadLetters, RequeueParams
from remediations.targets import Target
from tests.support.polling import eventually
from tests.support.redis_topologies import RedisCluster3, RedisNode

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


def same_node_other_slot(cluster: RedisCluster3, key: str) -> str:
    """A key served by the node serving ``key``, in another hash slot."""
    owner = cluster.owner_of(key)
    for i in range(1000):
        other = f"{key}:dead:{i}"
        if key_slot(other.encode()) != key_slot(key.encode()) and cluster.owner_of(other) is owner:
            return other
    raise AssertionError(f"no key beside {key!r} on its node")


def node_queues(node: RedisNode, spec: QueueSpec) -> RedisQueues:
    client = redis.asyncio.Redis(port=node.port, password=node.password)
    return RedisQueues("jobs", client, {"emails": spec})


async def test_queue_keys_in_two_cluster_slots_are_refused_as_not_moved(
    redis_cluster: RedisCluster3,
) -> None:
    """On a Redis Cluster, both keys of a list queue served by the node the connection
    reaches, in two slots: the counts read, and the move is rejected with CROSSSLOT before
    the script runs. It was recorded as a failure that may have moved messages ("count the
    keys"), so the run counted as a possible change; nothing moved, and the refusal says how
    to put the keys in one slot."""
    node, dead = redis_cluster.owner_of("emails"), same_node_other_slot(redis_cluster, "emails")
    queues = node_queues(node, QueueSpec(Layout.LIST, "emails", dead))
    try:
        await queues.client.lpush(dead, "m1", "m2")
        with pytest.raises(ActionRefused) as refused:
            await RequeueDeadLetters().run(
                context(queues), Target("RedisQueue", "", "jobs/emails"), RequeueParams()
            )
        assert refused.value.may_have_acted is False, refused.value.message
        assert "hash tag" in refused.value.message
        assert "nothing moved" in refused.value.message
        assert await queues.client.llen(dead) == 2
    finally:
        await queues.close()


async def test_a_queue_key_on_another_cluster_node_is_refused_saying_so(
    redis_cluster: RedisCluster3,
) -> None:
    """The connection reaches one node; the queue's keys live on another. The counts got
    ``MOVED <slot> <address>`` and the refusal showed that alone."""
    owner = redis_cluster.owner_of("emails")
    elsewhere = next(node for node in redis_cluster.nodes if node is not owner)
    queues = node_queues(elsewhere, QueueSpec(Layout.LIST, "emails", "{emails}:dead"))
    try:
        with pytest.raises(ActionRefused) as refused:
            await RequeueDeadLetters().run(
                context(queues), Target("RedisQueue", "", "jobs/emails"), RequeueParams()
            )
        assert "another node of a Redis Cluster" in refused.value.message
        assert refused.value.may_have_acted is False
    finally:
        await queues.close()


async def test_a_stream_dry_run_says_more_wait_than_it_would_move(redis_url: str) -> None:
    """Ten entries idle past ``min_idle``, a cap of 3: the dry run counted the idle entries
    with XPENDING ``COUNT`` the cap, so it said "requeue 3 of 3", as if no more waited. It
    looks one past the cap (still bounded) and says "3 of 4+"."""
    client = redis.asyncio.Redis.from_url(redis_url)
    queues = RedisQueues("jobs", client, {"events": QueueSpec(Layout.STREAM, "events", group="g")})
    try:
        await client.xgroup_create("events", "g", id="0", mkstream=True)
        for n in range(10):
            await client.xadd("events", {"n": str(n)})
        await client.xreadgroup("g", "dead-consumer", {"events": ">"}, count=10)
        params = RequeueParams.model_validate({"max_messages": 3, "min_idle": "1s"})
        await eventually(
            lambda: client.xpending_range("events", "g", min="-", max="+", count=10, idle=1000),
            lambda idle: len(idle) == 10,
        )

        result = await RequeueDeadLetters().run(
            ActionContext("run-1", True, Clients({"redis:jobs": queues})),
            Target("RedisQueue", "", "jobs/events"),
            params,
        )

        assert "requeue 3 of 4+ pending entries" in result.message, result.message
        assert (await client.xpending("events", "g"))["pending"] == 10
    finally:
        await queues.close()


async def _trimmed_group(client: redis.asyncio.Redis) -> None:
    """Ten entries delivered to a consumer that died, idle past 1 s; the first eight since
    deleted from the stream (XDEL, as a MAXLEN trim does)."""
    await client.xgroup_create("events", "g", id="0", mkstream=True)
    ids = [await client.xadd("events", {"n": str(n)}) for n in range(10)]
    await client.xreadgroup("g", "dead-consumer", {"events": ">"}, count=10)
    await client.xdel("events", *ids[:8])
    await eventually(
        lambda: client.xpending_range("events", "g", min="-", max="+", count=10, idle=1000),
        lambda idle: len(idle) == 10,
    )


TRIMMED = RequeueParams.model_validate({"max_messages": 3, "min_idle": "1s"})


async def test_a_stream_dry_run_counts_what_the_move_would_re_add(redis_url: str) -> None:
    """The move acknowledges deleted entries as gone and re-adds what exists; the dry run
    counted XPENDING's idle list and said "requeue 3 of 4+" where the move re-adds two."""
    client = redis.asyncio.Redis.from_url(redis_url)
    queues = RedisQueues("jobs", client, {"events": QueueSpec(Layout.STREAM, "events", group="g")})
    try:
        await _trimmed_group(client)
        dry = await RequeueDeadLetters().run(
            ActionContext("run-1", True, Clients({"redis:jobs": queues})),
            Target("RedisQueue", "", "jobs/events"),
            TRIMMED,
        )
        assert "requeue 2 of 2 pending entries" in dry.message, dry.message
        assert "8 pending entr(y/ies) deleted from the stream would be acknowledged" in dry.message
        assert (await client.xpending("events", "g"))["pending"] == 10  # nothing moved
    finally:
        await queues.close()


async def test_a_stream_move_acknowledges_entries_deleted_while_pending(redis_url: str) -> None:
    """Redis 6.2 (the embedded one) answers XAUTOCLAIM with a nil for a deleted entry: the
    script indexed it and failed ("attempt to index local 'entry'"), and the step failed on
    any group whose idle entries had been trimmed. Redis 7 lists them apart; both are done."""
    client = redis.asyncio.Redis.from_url(redis_url)
    queues = RedisQueues("jobs", client, {"events": QueueSpec(Layout.STREAM, "events", group="g")})
    try:
        await _trimmed_group(client)
        live = await RequeueDeadLetters().run(
            ActionContext("run-2", False, Clients({"redis:jobs": queues})),
            Target("RedisQueue", "", "jobs/events"),
            TRIMMED,
        )
        assert live.after is not None
        assert (live.outcome, live.after["moved"]) == (Outcome.OK, 2), live.message
        assert "8 pending entr(y/ies) were deleted from the stream" in live.message
        assert (await client.xpending("events", "g"))["pending"] == 0  # deleted: acknowledged
        consumers = [c["name"] for c in await client.xinfo_consumers("events", "g")]
        assert b"alert-remediator" not in consumers, consumers
    finally:
        await queues.close()


async def test_an_rq_dry_run_stops_looking_where_the_move_stops(queues: RedisQueues) -> None:
    """The scripts look past at most MAX_SKIPPED (10,000) ids whose job is gone, in batches
    of what is still wanted: the dry run's a cap plus one, the move's the cap. Each finished
    its batch past the limit, so with 10,000 such ids before two jobs and a cap of 5, the dry
    run's batch reached the jobs and said "requeue 2" where the move, its batch ending at the
    limit, moved none. Both stop at the limit itself: the dry run says what the move does."""
    r = queues.client
    future = NOW.timestamp() + 3600
    gone = {f"gone-{i:05d}": future for i in range(10_000)}
    for start in range(0, len(gone), 2_000):
        await r.zadd("rq:failed:reports", dict(list(gone.items())[start : start + 2_000]))
    for job_id in ("j-1", "j-2"):
        await r.hset(f"rq:job:{job_id}", mapping={"status": "failed", "origin": "reports"})
        await r.zadd("rq:failed:reports", {job_id: future + 1})
    action = RequeueDeadLetters(clock=lambda: NOW)
    params = RequeueParams.model_validate({"max_messages": 5})

    dry = await action.run(
        ActionContext("run-1", True, Clients({"redis:jobs": queues})), TARGET, params
    )
    live = await action.run(context(queues), TARGET, params)

    assert live.after is not None
    moved = len(live.after["jobs"])
    assert f"requeue {moved} of {moved} " in dry.message, (dry.message, live.message)
    assert "10000 failed id(s) would be skipped" in dry.message, dry.message
    assert "10000 failed id(s) skipped" in live.message, live.message
    assert await r.zcard("rq:failed:reports") == 10_002 - moved
