"""The worker claims in batches: a worker killed in the middle of a batch leaves each event of
it finished exactly once (those it completed are not run again, the rest are run once by the
worker that takes them up after their leases)."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sized
from pathlib import Path

import pytest
import structlog

from receiver.model import AlertEvent, Disposition
from receiver.priority import Priority
from receiver.store import Store
from receiver.worker import Worker
from tests.support.events import new_event
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
BATCH = 8

# A worker with room for the whole batch: it claims it in one claim, completes the events whose
# fingerprint ends in an even digit and hangs on the others, then is killed (SIGKILL).
_HALF_DONE_WORKER = """
import asyncio, sys
from receiver.model import Disposition
from receiver.store import Store
from receiver.worker import Worker

async def main(dsn: str) -> None:
    store = await Store.connect(dsn, min_size=1, max_size=4)
    claim = store.claim_events
    async def claim_events(*args, **kwargs):
        claims = await claim(*args, **kwargs)
        if claims:
            print("claimed " + " ".join(str(c.event.id) for c in claims), flush=True)
        return claims
    store.claim_events = claim_events
    async def half(event):
        if int(event.fingerprint[-1], 16) % 2 == 0:
            return Disposition.done()
        print(f"hanging {event.id}", flush=True)
        await asyncio.Event().wait()
    room = int(sys.argv[2])
    worker = Worker(store, half, owner="doomed", concurrency=room, lease_s=1.5, poll_interval_s=0.1)
    await worker.start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


async def _done(store: Store, ids: set[int]) -> bool:
    rows = [await store.get_event(i) for i in ids]
    return all(r is not None and r["state"] == "done" for r in rows)


async def test_a_worker_killed_in_the_middle_of_a_batch(store: Store, database_url: str) -> None:
    await store.insert_events([new_event(f"{i:016x}") for i in range(BATCH)])
    child = subprocess.Popen(
        [sys.executable, "-c", _HALF_DONE_WORKER, database_url, str(BATCH)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        assert line.startswith(b"claimed "), child.stderr.read() if child.stderr else line
        batch = {int(x) for x in line.split()[1:]}
        assert len(batch) == BATCH  # one claim took the whole batch
        hanging: set[int] = set()
        while len(hanging) < BATCH // 2:
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
            assert line.startswith(b"hanging "), line
            hanging.add(int(line.split()[1]))
        completed = batch - hanging
        # Killed only once the other half is settled in the store: those must never run again.
        await eventually(lambda: _done(store, completed))
    finally:
        child.send_signal(signal.SIGKILL)  # no release, no cleanup: a crash
        child.wait()

    seen: list[AlertEvent] = []

    async def record(event: AlertEvent) -> Disposition:
        seen.append(event)
        return Disposition.done()

    log = structlog.get_logger("test.batches")
    async with Worker(
        store, record, owner="rescuer", concurrency=4, lease_s=30, poll_interval_s=0.1, log=log
    ):
        await eventually(lambda: _done(store, batch))
    assert sorted(e.id for e in seen) == sorted(hanging)  # each once, none of the completed
    for event_id in batch:
        row = await store.get_event(event_id)
        assert row is not None
        # The completed half was claimed once; the rest twice, the lost lease counted.
        expected = (1, 0) if event_id in completed else (2, 1)
        assert (row["attempts"], row["failures"]) == expected, row


async def test_under_a_backlog_the_worker_claims_in_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With events still queued, a slot that frees up alone is not claimed alone: the worker
    waits until half its slots are free (a claim is four round trips)."""
    await store.insert_events([new_event(f"{i:016x}") for i in range(12)])
    sizes: list[int] = []
    real_claim = store.claim_events

    async def claim_events(*args: object, **kwargs: object) -> list[object]:
        claims = await real_claim(*args, **kwargs)  # type: ignore[arg-type]
        if claims:
            sizes.append(len(claims))
        return list(claims)

    monkeypatch.setattr(store, "claim_events", claim_events)
    gates: dict[int, asyncio.Event] = {}

    async def gated(event: AlertEvent) -> Disposition:
        gates[event.id] = asyncio.Event()
        await gates[event.id].wait()
        return Disposition.done()

    async with _worker(store, gated, 4) as worker:
        await eventually(functools.partial(_count, gates, 4))
        assert sizes == [4]
        released = 0
        while worker.processed < 8:
            # Let one in-flight event finish, and wait until the worker has settled it.
            waiting = [i for i, gate in gates.items() if not gate.is_set()]
            gates[min(waiting)].set()
            released += 1
            await eventually(functools.partial(_processed, worker, released))
        # Eight settled with four still queued at every claim: claims of two, never of one.
        assert sizes[0] == 4
        assert all(size >= 2 for size in sizes[1:]), sizes
        assert sum(sizes) >= 8
        for gate in gates.values():
            gate.set()


class _Gate:
    """A process that records each event's alert name and holds it until ``release``."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.names: dict[int, str] = {}

    async def process(self, event: AlertEvent) -> Disposition:
        self.names[event.id] = event.alertname
        await self.release.wait()
        return Disposition.done()

    async def claimed(self, n: int) -> bool:
        return len(self.names) >= n


def _worker(
    store: Store, process: Callable[[AlertEvent], Awaitable[Disposition]], concurrency: int
) -> Worker:
    """A worker with ``concurrency`` slots, long leases and a quick poll."""
    log = structlog.get_logger("test.batches")
    return Worker(
        store, process, owner="w", concurrency=concurrency, lease_s=30, poll_interval_s=0.1, log=log
    )


async def _count(gates: dict[int, asyncio.Event], n: int) -> bool:
    return len(gates) >= n


async def _processed(worker: Worker, n: int) -> bool:
    return worker.processed >= n


async def test_an_alert_name_with_nothing_in_progress_is_claimed_with_every_slot_taken(
    store: Store,
) -> None:
    """A storm of one alert name fills every slot and queues more. An event of another alert
    name is claimed at once, one beyond the concurrency, not when half the slots have freed up
    (receiver/worker/express.py): intake's NOTIFY names its lane."""
    await store.insert_events([new_event(f"{i:016x}") for i in range(12)])
    gate = _Gate()

    async def other_claimed() -> bool:
        return "QueueBacklog" in gate.names.values()

    async with _worker(store, gate.process, 4) as worker:
        await asyncio.wait_for(worker.listening.wait(), 10)
        await eventually(functools.partial(gate.claimed, 4))
        await store.insert_events([new_event("f" * 16, alertname="QueueBacklog")])
        await eventually(other_claimed)
        # Nothing of the storm finished meanwhile: the express took a fifth slot.
        assert worker.processed == 0
        assert sorted(gate.names.values()) == ["HighMemoryUsage"] * 4 + ["QueueBacklog"]
        gate.release.set()
        await eventually(functools.partial(_processed, worker, 13))
        assert sorted(gate.names.values()) == ["HighMemoryUsage"] * 12 + ["QueueBacklog"]


async def test_a_slot_freed_during_an_express_claim_that_finds_nothing_is_not_lost(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The express claim is a round trip: a slot freed meanwhile (the one event in progress
    ended) must still wake the loop when the claim finds nothing (another replica took the
    hinted event). It once slept on, every slot free, until the next named lane."""
    await store.insert_events([new_event(f"{i:016x}") for i in range(3)])
    gate = _Gate()
    release = gate.release

    async with _worker(store, gate.process, 1) as worker:
        await asyncio.wait_for(worker.listening.wait(), 10)
        await eventually(functools.partial(gate.claimed, 1))  # every slot taken

        async def finds_nothing() -> bool:
            release.set()  # the event in progress ends during the round trip
            await eventually(functools.partial(_processed, worker, 1))
            return False

        monkeypatch.setattr(worker, "_claim_express", finds_nothing)
        await store.insert_events([new_event("f" * 16, alertname="QueueBacklog")])
        await eventually(functools.partial(_processed, worker, 4))


async def test_while_an_express_event_works_the_others_wait_their_turn(store: Store) -> None:
    """While the express claim's event is on its way, the storm's events in progress hold back
    at their next call to the store or the guards (``Priority.turn``, receiver/priority.py),
    and go on once it is done: the unrelated alert has the loop, the store and the guards to
    itself."""
    await store.insert_events([new_event(f"{i:016x}") for i in range(8)])
    priority = Priority(hold_s=60)
    release, express_done = asyncio.Event(), asyncio.Event()
    at_turn: set[int] = set()
    past_turn: set[int] = set()
    names: dict[int, str] = {}

    async def process(event: AlertEvent) -> Disposition:
        names[event.id] = event.alertname
        if event.alertname == "QueueBacklog":
            await priority.turn()  # its own turn is at once
            past_turn.add(event.id)
            await express_done.wait()
            return Disposition.done()
        await release.wait()
        at_turn.add(event.id)
        await priority.turn()
        past_turn.add(event.id)
        return Disposition.done()

    log = structlog.get_logger("test.batches")
    worker = Worker(
        store,
        process,
        owner="w",
        concurrency=4,
        lease_s=30,
        poll_interval_s=0.1,
        log=log,
        priority=priority,
    )
    async with worker:
        await asyncio.wait_for(worker.listening.wait(), 10)
        await eventually(functools.partial(_at_least, names, 4))
        await store.insert_events([new_event("f" * 16, alertname="QueueBacklog")])

        async def express_past_turn() -> bool:
            return any(names[i] == "QueueBacklog" for i in past_turn)

        await eventually(express_past_turn)
        assert priority.holding
        release.set()
        await eventually(functools.partial(_at_least, at_turn, 4))
        for _ in range(3):
            await asyncio.sleep(0)
        # Each storm event reached its turn and was held there.
        assert {names[i] for i in past_turn} == {"QueueBacklog"}
        express_done.set()
        await eventually(functools.partial(_processed, worker, 9))
        assert not priority.holding
        assert len(past_turn) == 9


async def _at_least(items: Sized, n: int) -> bool:
    return len(items) >= n
