"""How one attempt ends when the lease keeper finds the lease gone (receiver/worker/attempt.py).

The queue calls here are small local functions: what is under test is the attempt's decision
(wait for the work or abandon it), not the store's statements, which the integration tests
of the worker cover against PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions
import structlog
import structlog.testing

from receiver.model import Disposition
from receiver.store import EventLease
from receiver.worker.attempt import Attempts, Backoff, Claim, QueueCalls


class Queue:
    """Queue calls whose lease can no longer be extended: as after the work's own write
    completed the event, or after another worker took it."""

    def __init__(self) -> None:
        self.settled: list[str] = []
        self.gave_up = asyncio.Event()

    def calls(self) -> QueueCalls:
        async def claim(owner: str, limit: int, lease_s: float) -> list[Claim]:
            return []

        async def extend(item_id: int, owner: str, attempts: int, lease_s: float) -> bool:
            self.gave_up.set()
            return False

        async def complete(item_id: int, owner: str, attempts: int) -> bool:
            self.settled.append("complete")
            return True

        async def release(
            item_id: int, owner: str, attempts: int, delay_s: float, error: str | None
        ) -> bool:
            self.settled.append("release")
            return True

        async def fail(
            item_id: int, owner: str, attempts: int, error: str | None, **_: Any
        ) -> str | None:
            self.settled.append("fail")
            return "pending"

        async def hand_back(item_id: int, owner: str, attempts: int) -> bool:
            self.settled.append("hand_back")
            return True

        return QueueCalls("event", claim, extend, complete, release, fail, hand_back)


def _runs(task: asyncio.Task[Any], name: str) -> bool:
    return getattr(task.get_coro(), "__name__", "") == name


def attempts() -> Attempts:
    return Attempts(
        owner="w",
        lease_s=0.06,
        max_attempts=3,
        backoff=Backoff(0.01, 0.02),
        log=structlog.get_logger("test.attempts"),
    )


async def test_a_lease_gone_while_the_completing_write_is_on_its_way_is_not_a_lost_lease() -> None:
    queue = Queue()
    lease = EventLease(1, "w", 1)
    ended = []

    async def work() -> Disposition:
        (keeper,) = [t for t in asyncio.all_tasks() if _runs(t, "_keep_lease")]
        lease.finishing = True  # the write that completes the event is sent ...
        await queue.gave_up.wait()  # ... the keeper's extension comes back "not held" ...
        await asyncio.wait({keeper})  # ... and the keeper ends before the answer is read
        lease.completed = True
        ended.append(True)
        return Disposition.done(settled=True)

    ran = await attempts().run(queue.calls(), Claim("event", 1, 1, 0, None, work, lease))

    assert ran is True
    assert ended == [True]
    assert queue.settled == []  # completed by the work's own write: nothing left to write


async def test_a_lease_gone_before_the_last_write_is_lost_and_the_work_abandoned() -> None:
    queue = Queue()
    lease = EventLease(1, "w", 1)
    cancelled = []

    async def work() -> Disposition:
        try:
            await asyncio.Event().wait()  # still working when the lease is found gone
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return Disposition.done()

    ran = await attempts().run(queue.calls(), Claim("event", 1, 1, 0, None, work, lease))

    assert ran is False
    assert cancelled == [True]
    assert queue.settled == []  # another worker may hold it now: nothing is written


async def test_a_failed_attempt_logs_the_errors_text_as_stored_not_its_repr() -> None:
    # redis-py 8's repr of a server's reply is its class alone ("server:ResponseError"): the
    # log said which class failed, never what the server said.
    queue = Queue()

    async def work() -> Disposition:
        raise redis.exceptions.ResponseError("NOSCRIPT No matching script. Please use EVAL.")

    with structlog.testing.capture_logs() as logs:
        ran = await attempts().run(queue.calls(), Claim("event", 7, 1, 0, None, work))

    assert ran is True
    assert queue.settled == ["fail"]
    (failed,) = [e for e in logs if e["event"] == "processing failed"]
    assert failed["error"] == "ResponseError: NOSCRIPT No matching script. Please use EVAL."
