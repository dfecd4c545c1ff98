"""The worker's leases against a real PostgreSQL: extended while it works, released when it
stops, taken over from a killed worker (a real child process, SIGKILLed) only once they run
out; and the worker surviving a store outage (the server stopped and started again)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from receiver.store import Store
from receiver.worker import Worker
from tests.support.events import new_event
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer
from tests.support.worker_loop import LOG, LoopProbe, Recorder, _depth_is

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


async def _lease_until(store: Store) -> datetime:
    """The lease of the one claimed event (its owner extends it while it works)."""
    async with store._pool.acquire() as conn:
        until: datetime = await conn.fetchval(
            "SELECT lease_until FROM alert_events WHERE state = 'claimed'"
        )
    return until


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
