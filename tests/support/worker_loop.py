"""The worker (``receiver.worker.Worker``) run in the test's process against a real PostgreSQL:
``Recorder``, a process() that records the events it saw and answers as told; the ``workers``
fixture, which makes workers on the test's store and stops them after it; ``LoopProbe``, what
the worker's loop is doing seen from outside; and the queue's depth as a condition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog

from receiver.model import AlertEvent, Disposition
from receiver.store import Store
from receiver.worker import Worker
from tests.support.polling import eventually

LOG = structlog.get_logger("test.worker")


class LoopProbe:
    """What the worker's loop is doing, seen from outside (the gate its idle wait needs).

    Counts, on one clock, each time the LISTEN connection is (re)established (the worker sets
    ``listening`` and wakes its loop at that moment) and each claim of events that began and
    returned. Once a claim that began after the latest LISTEN has returned, and with nothing
    stored meanwhile, the loop waits for a NOTIFY or its poll interval: whatever it does next
    was woken by one of those. Claims that raised are counted apart (a store outage)."""

    def __init__(self, store: Store, worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
        self._tick = 0
        self.listened = -1
        self.idle_since = -1
        self.failed_claims = 0
        real_set = worker.listening.set
        real_claim = store.claim_events

        def listening_set() -> None:
            self.listened = self._next()
            real_set()

        async def claim_events(*args: Any, **kwargs: Any) -> Any:
            began = self._next()
            try:
                claims = await real_claim(*args, **kwargs)
            except Exception:
                self.failed_claims += 1
                raise
            if not claims:
                self.idle_since = max(self.idle_since, began)
            return claims

        monkeypatch.setattr(worker.listening, "set", listening_set)
        monkeypatch.setattr(store, "claim_events", claim_events)

    def _next(self) -> int:
        self._tick += 1
        return self._tick

    async def idle(self) -> None:
        """Until the loop waits for a wake-up with the current LISTEN connection."""

        async def waiting() -> bool:
            return self.listened >= 0 and self.idle_since > self.listened

        await eventually(waiting, what="the worker's loop idle after LISTEN")


class Recorder:
    """A process() that records what it saw and answers with a programmable disposition."""

    def __init__(self) -> None:
        self.seen: list[AlertEvent] = []
        self.answers: list[Disposition | Exception] = []
        self.started = asyncio.Event()
        self.block: asyncio.Event | None = None

    async def __call__(self, event: AlertEvent) -> Disposition:
        self.seen.append(event)
        self.started.set()
        if self.block is not None:
            await self.block.wait()
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return Disposition.done()


@pytest.fixture
async def workers(store: Store) -> AsyncIterator[Callable[..., Worker]]:
    """Factory: make_worker(process, **options) -> started Worker, stopped after the test."""
    made: list[Worker] = []

    def make(process: Recorder, **options: object) -> Worker:
        settings: dict[str, object] = {
            "concurrency": 4,
            "lease_s": 30.0,
            "poll_interval_s": 0.2,
            "log": LOG,
            "backoff_base_s": 0.05,
        }
        settings.update(options)
        worker = Worker(store, process, **settings)  # type: ignore[arg-type]
        made.append(worker)
        return worker

    yield make
    for worker in made:
        await worker.stop(grace_s=1)


async def _depth_is(store: Store, depth: int) -> bool:
    return await store.queue_depth() == depth
