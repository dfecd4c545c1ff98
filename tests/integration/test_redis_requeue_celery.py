# kombu ships type information but leaves most of its API unannotated.
# mypy: disallow-untyped-calls=False
"""redis.requeue_dead_letters on a Celery queue against kombu itself: messages kombu published
with priorities are dead-lettered, requeued by the step, and consumed by kombu's own Redis
transport. kombu keeps a queue's messages of each priority step in a list of its own and
consumes step 0 (the queue's own key) first (kombu/transport/redis.py ``_q_for_pri``,
``_brpop_start``), and puts a message back on its priority's list. Before, every message went
to the queue's own key: a priority-9 message, kombu's last, ran before all the others.

Needs the ``kombu`` package (the test extras)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from remediations.base import ActionContext, Clients, Outcome
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues
from remediations.redis_queue.requeue import RequeueDeadLetters, RequeueParams
from remediations.targets import Target

pytestmark = pytest.mark.redis

TASKS = QueueSpec(Layout.CELERY, "tasks", "tasks:dead")
TARGET = Target("RedisQueue", "", "jobs/tasks")
SEP = "\x06\x16"
KEYS = ["tasks", f"tasks{SEP}3", f"tasks{SEP}6", f"tasks{SEP}9"]  # kombu's, by priority step


@pytest.fixture
def kombu(redis_url: str) -> Iterator[Connection]:
    with Connection(redis_url) as connection:
        yield connection


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[RedisQueues]:
    created = RedisQueues("jobs", redis.asyncio.Redis.from_url(redis_url), {"tasks": TASKS})
    try:
        yield created
    finally:
        await created.close()


def consumed(kombu: Connection, queue: Queue, count: int) -> list[str]:
    """``count`` message bodies, in the order kombu's consumer takes them."""
    simple = kombu.SimpleQueue(queue)
    try:
        bodies = []
        for _ in range(count):
            message = simple.get(timeout=5)
            message.ack()
            bodies.append(str(message.payload))
        return bodies
    finally:
        simple.close()


async def test_dead_letters_go_back_to_their_priority_as_kombu_puts_them(
    kombu: Connection, queues: RedisQueues, redis_url: str
) -> None:
    queue = Queue("tasks", Exchange("tasks", "direct"), routing_key="tasks", max_priority=9)
    producer = kombu.Producer()
    published = [("low", 9), ("urgent", 0), ("normal", 5), ("plain", None), ("eight", 8)]
    sync = redis.Redis.from_url(redis_url)
    try:
        for body, priority in published:
            extra = {} if priority is None else {"priority": priority}
            producer.publish(
                body, exchange=queue.exchange, routing_key="tasks", declare=[queue], **extra
            )
            # An application's dead-letter handling takes it (oldest at the right): from
            # whichever of the queue's lists kombu put it on.
            moved = [sync.lmove(key, "tasks:dead", "RIGHT", "LEFT") for key in KEYS]
            assert sum(m is not None for m in moved) == 1
    finally:
        sync.close()

    result = await RequeueDeadLetters().run(
        ActionContext("run-1", False, Clients({"redis:jobs": queues})),
        TARGET,
        RequeueParams(max_messages=10),
    )

    assert result.outcome is Outcome.OK, result.message
    assert result.after == {"dead_letters": 0, "queue": 2, "moved": 5}
    assert "1 at priority 3, 1 at priority 6, 1 at priority 9" in result.message, result.message
    r = queues.client
    assert await r.llen(f"tasks{SEP}3") == 1
    assert await r.llen(f"tasks{SEP}6") == 1
    assert await r.llen(f"tasks{SEP}9") == 1
    # kombu's consumer takes them as it would have before they failed: step 0 first (oldest
    # first within a step), then 3, 6, 9.
    assert consumed(kombu, queue, 5) == ["urgent", "plain", "normal", "eight", "low"]
