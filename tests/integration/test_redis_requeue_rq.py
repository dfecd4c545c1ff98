"""redis.requeue_dead_letters on RQ's keys against RQ itself: RQ's worker (``SimpleWorker``,
burst, in this process, on the real Redis) fails a job, the step requeues it, RQ reads it
back as queued and its worker runs it again. And the jobs RQ's own requeue would put
somewhere else than the configured queue, which the step leaves: a job whose origin is another
queue (RQ requeues to ``job.origin``, rq/registry.py ``FailedJobRegistry.requeue``), and a
rate-limited job (RQ 3 requeues it through its rate limit). Before, both were pushed on the
configured queue, and a job's ``ttl`` was not set again as its hash's expiry, as RQ's enqueue
does (rq/job.py ``Job.cleanup``).

Needs the ``rq`` package (the test extras)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import redis.asyncio
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from remediations.base import ActionContext, Clients, Outcome
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues
from remediations.redis_queue.requeue import RequeueDeadLetters, RequeueParams
from remediations.targets import Target

pytestmark = pytest.mark.redis

REPORTS = QueueSpec(Layout.RQ, "rq:queue:reports", "rq:failed:reports")
TARGET = Target("RedisQueue", "", "jobs/reports")


class BurstWorker(SimpleWorker):
    """RQ's SimpleWorker without its command channel (rq/worker/base.py ``subscribe``: a
    pubsub thread for "stop this job" commands, which a burst run here never gets). Its thread
    waits up to 60 s on its subscription, and redis-py 8's ``PubSubWorkerThread.stop`` joins
    it: one worker in three took a minute to quit."""

    def subscribe(self) -> None:
        return None

    def unsubscribe(self) -> None:
        return None


def fails_until(marker: str) -> str:
    """An RQ job: fails until the file ``marker`` exists, then returns its text."""
    return Path(marker).read_text("utf-8")


@pytest.fixture
def sync(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[RedisQueues]:
    created = RedisQueues("jobs", redis.asyncio.Redis.from_url(redis_url), {"reports": REPORTS})
    try:
        yield created
    finally:
        await created.close()


def ctx(queues: RedisQueues, *, dry_run: bool = False) -> ActionContext:
    return ActionContext("run-1", dry_run, Clients({"redis:jobs": queues}))


def failed(sync: redis.Redis, queue: str, marker: Path) -> Job:
    """A job of ``queue`` that RQ's worker ran and failed: in its failed registry."""
    job = Queue(queue, connection=sync).enqueue(fails_until, str(marker))
    BurstWorker([Queue(queue, connection=sync)], connection=sync).work(burst=True)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    return job


async def test_a_job_rq_failed_is_requeued_as_rq_reads_it_and_its_worker_runs_it(
    sync: redis.Redis, queues: RedisQueues, tmp_path: Path
) -> None:
    marker = tmp_path / "ready"
    job = failed(sync, "reports", marker)
    registry = FailedJobRegistry("reports", connection=sync)
    assert registry.get_job_ids() == [job.id]

    result = await RequeueDeadLetters().run(ctx(queues), TARGET, RequeueParams(max_messages=10))

    assert result.outcome is Outcome.OK, result.message
    assert result.after["jobs"] == [job.id]
    # What RQ's own tools read (rq info: the queue, its failed registry; the job's status).
    reports = Queue("reports", connection=sync)
    assert reports.job_ids == [job.id]
    assert registry.count == 0
    assert "reports" in [q.name for q in Queue.all(connection=sync)]
    fetched = Job.fetch(job.id, connection=sync)
    assert fetched.get_status() == JobStatus.QUEUED
    assert fetched.origin == "reports"
    assert (fetched.started_at, fetched.ended_at) == (None, None)
    assert fetched.enqueued_at is not None
    assert job.enqueued_at is not None
    assert fetched.enqueued_at > job.enqueued_at
    # And RQ's worker runs it again: this time it succeeds.
    marker.write_text("done", "utf-8")
    BurstWorker([reports], connection=sync).work(burst=True)
    assert fetched.get_status(refresh=True) == JobStatus.FINISHED
    assert fetched.return_value() == "done"
    assert reports.count == 0
    assert registry.count == 0


async def test_a_job_whose_origin_is_another_queue_is_left_where_rq_would_find_it(
    sync: redis.Redis, queues: RedisQueues, tmp_path: Path
) -> None:
    """A failed job of queue ``exports`` whose id is also in ``reports``' failed registry (a
    job moved between queues, or written there by hand): RQ's requeue would put it on
    ``exports``, a queue this step was not configured for. The step leaves it in the registry
    and says so; it had pushed it on ``reports``, where RQ never would."""
    own = failed(sync, "reports", tmp_path / "never")
    stray = failed(sync, "exports", tmp_path / "never")
    sync.zadd("rq:failed:reports", {stray.id: datetime.now(UTC).timestamp() + 3600})
    action = RequeueDeadLetters()

    dry = await action.run(ctx(queues, dry_run=True), TARGET, RequeueParams(max_messages=10))
    assert "requeue 1 of 1 dead letters" in dry.message, dry.message
    assert "1 failed job(s) would be skipped: their origin is not queue 'reports'" in dry.message

    result = await action.run(ctx(queues), TARGET, RequeueParams(max_messages=10))

    assert result.after["jobs"] == [own.id], result.message
    assert "1 failed job(s) skipped: their origin is not queue 'reports'" in result.message
    assert "rq requeue --queue reports" in result.message
    assert Queue("reports", connection=sync).job_ids == [own.id]
    assert Queue("exports", connection=sync).job_ids == []
    assert sync.zrange("rq:failed:reports", 0, -1) == [stray.id.encode()]
    assert stray.get_status(refresh=True) == JobStatus.FAILED


async def test_a_rate_limited_job_is_left_for_rq_to_requeue_through_its_limit(
    sync: redis.Redis, queues: RedisQueues, tmp_path: Path
) -> None:
    """RQ 3 requeues a rate-limited job to wait for a free slot of its limit; pushed on the
    queue, it would run past the limit. Written as RQ writes its fields (rq/job.py
    ``to_dict``), so that the test does not hang on a rate limit's own worker machinery."""
    limited = failed(sync, "reports", tmp_path / "never")
    sync.hset(limited.key, mapping={"rate_limit_key": "pdf", "rate_limit_concurrency": 2})

    result = await RequeueDeadLetters().run(ctx(queues), TARGET, RequeueParams(max_messages=10))

    assert result.outcome is Outcome.NOOP, result.message
    assert "1 rate-limited job(s) skipped" in result.message
    assert Queue("reports", connection=sync).job_ids == []
    assert FailedJobRegistry("reports", connection=sync).get_job_ids() == [limited.id]


async def test_a_job_with_a_ttl_gets_it_again_as_rq_enqueue_sets_it(
    sync: redis.Redis, queues: RedisQueues, tmp_path: Path
) -> None:
    """A job enqueued with ``ttl`` (how long it may wait queued) fails: its hash then expires
    with its failure (``failure_ttl``, a year by default). RQ's requeue enqueues it again,
    which sets the hash's expiry to the job's ttl; the step left the failure's."""
    job = Queue("reports", connection=sync).enqueue(
        fails_until, str(tmp_path / "never"), ttl=600, failure_ttl=365 * 86400
    )
    BurstWorker([Queue("reports", connection=sync)], connection=sync).work(burst=True)
    assert sync.ttl(job.key) > 600

    await RequeueDeadLetters().run(ctx(queues), TARGET, RequeueParams(max_messages=10))

    assert 0 < sync.ttl(job.key) <= 600
    assert Queue("reports", connection=sync).job_ids == [job.id]
