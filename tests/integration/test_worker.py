"""The worker against a real PostgreSQL: wake-ups, leases, crashes, retries, outages."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog

from receiver.embedded.process import free_port
from receiver.model import AlertEvent, Disposition, RunOutcome, Status
from receiver.store import ClaimedJob, Store
from receiver.worker import Worker
from tests.support.events import new_event, new_run
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer
from tests.support.said import Said

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
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


async def test_processes_every_event_once(store: Store, workers: Callable[..., Worker]) -> None:
    process = Recorder()
    worker = workers(process, owner="w1")
    await store.insert_events([new_event(i) for i in range(25)])
    await worker.start()
    await eventually(lambda: _depth_is(store, 0))
    assert sorted(e.id for e in process.seen) == sorted({e.id for e in process.seen})
    assert len(process.seen) == 25


async def _depth_is(store: Store, depth: int) -> bool:
    return await store.queue_depth() == depth


async def _lease_until(store: Store) -> datetime:
    """The lease of the one claimed event (its owner extends it while it works)."""
    async with store._pool.acquire() as conn:
        until: datetime = await conn.fetchval(
            "SELECT lease_until FROM alert_events WHERE state = 'claimed'"
        )
    return until


async def test_notify_wakes_the_worker(
    store: Store, workers: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    process = Recorder()
    # A poll interval of a minute: only the NOTIFY can make it look within the test's bound.
    worker = workers(process, poll_interval_s=60.0)
    probe = LoopProbe(store, worker, monkeypatch)
    await worker.start()
    await probe.idle()  # the loop waits: nothing but the insert's NOTIFY can wake it
    started = time.monotonic()
    await store.insert_events([new_event(1)])
    await asyncio.wait_for(process.started.wait(), 5)
    assert time.monotonic() - started < 5
    await eventually(lambda: _depth_is(store, 0))


async def test_listen_connection_is_reestablished(
    store: Store,
    workers: Callable[..., Worker],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process = Recorder()
    worker = workers(process, poll_interval_s=60.0)
    probe = LoopProbe(store, worker, monkeypatch)
    await worker.start()
    await asyncio.wait_for(worker.listening.wait(), 10)
    conn = await asyncpg.connect(database_url)
    listeners = """SELECT pid FROM pg_stat_activity
                   WHERE datname = current_database() AND query LIKE 'LISTEN%'"""
    try:
        [old] = [r["pid"] for r in await conn.fetch(listeners)]
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", old)

        async def relistened() -> bool:
            pids = [r["pid"] for r in await conn.fetch(listeners)]
            return worker.listening.is_set() and bool(pids) and old not in pids

        await eventually(relistened)
    finally:
        await conn.close()
    await probe.idle()  # on the new connection: only the insert's NOTIFY can wake it now
    await store.insert_events([new_event(2)])
    await asyncio.wait_for(process.started.wait(), 5)


async def test_retry_disposition_and_exceptions_release_with_delay(
    store: Store, workers: Callable[..., Worker], database_url: str
) -> None:
    process = Recorder()
    process.answers = [Disposition.retry(0.3, "redis unreachable"), RuntimeError("boom")]
    worker = workers(process)
    await store.insert_events([new_event(3)])
    await worker.start()
    await eventually(lambda: _depth_is(store, 0))
    assert len(process.seen) == 3  # retry, exception, done
    event = await store.get_event(process.seen[0].id)
    assert event is not None
    assert event["state"] == "done"
    assert event["attempts"] == 3
    assert event["last_error"] == "RuntimeError: boom"


async def test_a_retry_asked_for_at_once_still_backs_off_with_the_attempts(
    store: Store, workers: Callable[..., Worker]
) -> None:
    """Guards down for hours: the pipeline asks to retry soon, every time. The worker's
    backoff for the attempt sets the floor, so the queue is not polled in a tight loop."""
    process = Recorder()
    process.answers = [Disposition.retry(0.0, "guards unavailable")]
    worker = workers(process, backoff_base_s=100.0)
    await store.insert_events([new_event(4)])
    await worker.start()
    await asyncio.wait_for(process.started.wait(), 10)

    async def released() -> bool:
        event = await store.get_event(process.seen[0].id)
        return event is not None and event["state"] == "pending"

    await eventually(released)
    event = await store.get_event(process.seen[0].id)
    assert event is not None
    wait = (event["not_before"] - await store.server_now()).total_seconds()
    assert wait > 40  # base 100 s with jitter of 0.5x to 1x, minus the test's own time
    assert event["last_error"] == "guards unavailable"


async def test_events_of_one_alert_run_in_order(
    store: Store, workers: Callable[..., Worker]
) -> None:
    process = Recorder()
    worker = workers(process, concurrency=8)
    await store.insert_events([new_event(7), new_event(7, Status.RESOLVED), new_event(8)])
    await worker.start()
    await eventually(lambda: _depth_is(store, 0))
    statuses = [e.status for e in process.seen if e.fingerprint == f"{7:016x}"]
    assert statuses == [Status.FIRING, Status.RESOLVED]


async def test_lease_is_extended_while_processing(
    store: Store, workers: Callable[..., Worker]
) -> None:
    slow = Recorder()
    slow.block = asyncio.Event()
    first = workers(slow, owner="slow", lease_s=0.6)
    await store.insert_events([new_event(4)])
    await first.start()
    await asyncio.wait_for(slow.started.wait(), 5)
    other = Recorder()
    second = workers(other, owner="other", lease_s=0.6, poll_interval_s=0.1)
    await second.start()
    claimed = await _lease_until(store)

    # The slow worker's lease has been carried three lease lengths past its claim: without
    # the extensions the other worker, polling every 0.1 s, would have taken the event.
    async def extended() -> float:
        return (await _lease_until(store) - claimed).total_seconds()

    await eventually(extended, lambda s: s >= 3 * 0.6)
    assert other.seen == []
    slow.block.set()
    await eventually(lambda: _depth_is(store, 0))
    assert other.seen == []


async def test_stop_releases_unfinished_work_for_another_worker(
    store: Store, workers: Callable[..., Worker]
) -> None:
    stuck = Recorder()
    stuck.block = asyncio.Event()  # never set
    first = workers(stuck, owner="first")
    await store.insert_events([new_event(5)])
    await first.start()
    await asyncio.wait_for(stuck.started.wait(), 5)
    started = time.monotonic()
    await first.stop(grace_s=0.3)
    assert time.monotonic() - started < 5
    row = await store.get_event(stuck.seen[0].id)
    assert row is not None
    assert row["state"] == "pending"
    assert row["lease_owner"] is None

    finisher = Recorder()
    second = workers(finisher, owner="second")
    await second.start()
    await eventually(lambda: _depth_is(store, 0))
    assert [e.id for e in finisher.seen] == [stuck.seen[0].id]


_CRASHING_WORKER = """
import asyncio, sys
from receiver.store import Store
from receiver.worker import Worker

async def main(dsn: str) -> None:
    store = await Store.connect(dsn, min_size=1, max_size=4)
    async def hang(event):
        print(f"processing {event.id}", flush=True)
        await asyncio.Event().wait()
    worker = Worker(store, hang, owner="doomed", concurrency=4, lease_s=1.5, poll_interval_s=0.1)
    await worker.start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


async def test_event_of_a_killed_worker_is_reclaimed_after_its_lease(
    store: Store, workers: Callable[..., Worker], database_url: str
) -> None:
    await store.insert_events([new_event(6)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_WORKER, database_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        assert line.startswith(b"processing "), child.stderr.read() if child.stderr else line
        event_id = int(line.split()[1])
    finally:
        child.send_signal(signal.SIGKILL)  # no release, no cleanup: a crash
        child.wait()
    killed_at = time.monotonic()

    rescuer = Recorder()
    worker = workers(rescuer, owner="rescuer", poll_interval_s=0.1)
    await worker.start()
    await eventually(lambda: _depth_is(store, 0))
    assert time.monotonic() - killed_at > 0.5  # it waited for the lease, it did not steal it
    assert [e.id for e in rescuer.seen] == [event_id]
    row = await store.get_event(event_id)
    assert row is not None
    assert row["attempts"] == 2


async def test_worker_survives_a_store_outage(
    pg_controlled: PostgresServer, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await Store.connect(database_url, min_size=1, max_size=4, connect_timeout_s=1)
    process = Recorder()
    worker = Worker(
        store,
        process,
        owner="w",
        concurrency=4,
        poll_interval_s=0.2,
        lease_s=30,
        log=LOG,
        backoff_base_s=0.05,
    )
    probe = LoopProbe(store, worker, monkeypatch)
    try:
        await worker.start()
        await asyncio.wait_for(worker.listening.wait(), 10)
        pg_controlled.stop("immediate")
        try:
            # The outage as the worker sees it: its listen connection is lost, a claim fails.
            async def both_failed() -> bool:
                return not worker.listening.is_set() and probe.failed_claims > 0

            await eventually(both_failed, what="the worker noticing the outage")
        finally:
            pg_controlled.start()
        await store.insert_events([new_event(9)])
        await eventually(lambda: _depth_is(store, 0))
        assert len(process.seen) == 1
        await asyncio.wait_for(worker.listening.wait(), 15)  # LISTEN is back too
    finally:
        await worker.stop(grace_s=1)
        await store.close()


async def test_worker_takes_up_jobs_when_they_come_due(
    store: Store, workers: Callable[..., Worker]
) -> None:
    run_id = await new_run(store, dry_run=False)
    seen: list[tuple[str, str, float]] = []
    due = asyncio.Event()

    async def process_job(job: ClaimedJob) -> Disposition:
        seen.append((str(job.kind), job.run_id, time.monotonic()))
        due.set()
        return Disposition.done()

    worker = workers(Recorder(), process_job=process_job)
    await worker.start()
    scheduled = time.monotonic()
    # Due in 0.5 s: no NOTIFY wakes the worker then, its poll must find it.
    await store.set_run_outcome(run_id, RunOutcome.VERIFYING, schedule=[("verify_deadline", 0.5)])
    await asyncio.wait_for(due.wait(), 10)
    [(kind, job_run, taken)] = seen
    assert (kind, job_run) == ("verify_deadline", run_id)
    assert taken - scheduled >= 0.5
    await eventually(lambda: _no_job_due(store))


async def _no_job_due(store: Store) -> bool:
    return await store.jobs_due_count() == 0


async def test_a_listen_connection_that_fails_is_a_warning_with_its_cause(
    store: Store, workers: Callable[..., Worker]
) -> None:
    """database.direct_url unreachable (a typo, a NetworkPolicy): the worker finds new work by
    polling only, so say so at warning level with the error's class, not "lost; reconnecting"
    at info with no cause; never the URL (it holds a password)."""
    said = Said()
    dsn = f"postgresql://remediator:direct-secret@127.0.0.1:{free_port()}/remediator"
    worker = workers(Recorder(), owner="w1", listen_dsn=dsn, log=said)
    await worker.start()

    def warned() -> list[tuple[str, str, dict[str, object]]]:
        return [line for line in said.lines if line[0] == "warning" and "listen" in line[1]]

    await eventually(lambda: asyncio.sleep(0, warned()), bool)
    _, event, fields = warned()[0]
    assert "polling" in event
    assert "ConnectionRefusedError" in str(fields.get("error"))

    # The next failures, a second or so apart, are not warned about again within the minute.
    def failed() -> list[tuple[str, str, dict[str, object]]]:
        return [line for line in said.lines if "listen connection failed" in line[1]]

    await eventually(lambda: asyncio.sleep(0, failed()), lambda f: len(f) >= 2)
    assert len(warned()) == 1, said.lines
    assert "direct-secret" not in repr(said.lines)
