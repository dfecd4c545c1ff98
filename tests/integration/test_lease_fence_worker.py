"""What a lost lease means for a worker and its transaction (receiver/store/fence.py), on a real
PostgreSQL: a worker whose fenced write finds its lease lost stops without settling the event,
and a fenced transaction still open holds the event from every claim until it ends."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from receiver.model import AlertEvent, Disposition
from receiver.store import EventLease, Store
from receiver.store.fence import held_sql
from receiver.worker import Worker
from tests.support.events import TARGET, new_event
from tests.support.leases import RESTART
from tests.support.leases import claim_one as _claim
from tests.support.leases import take_over_fence as _take_over
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres


async def test_a_worker_whose_write_finds_its_lease_lost_stops_without_settling(
    store: Store, database_url: str
) -> None:
    await store.insert_events([new_event(1)])
    taken = asyncio.Event()

    async def process(event: AlertEvent, lease: EventLease | None = None) -> Disposition:
        assert lease is not None
        run_id = await store.create_run(rule="r", event=event, target=TARGET, dry_run=True)
        assert run_id is not None
        await _take_over(store, event.id)
        taken.set()
        await store.record_step(run_id, lease.fence, idx=0, action=RESTART, outcome="ok")
        return Disposition.done()

    worker = Worker(
        store,
        process,
        owner="a",
        concurrency=1,
        lease_s=60.0,
        poll_interval_s=0.1,
        lease_to_process=True,
    )
    with capture_logs() as logs:
        await worker.start()
        try:
            await asyncio.wait_for(taken.wait(), 20)
            await eventually(
                lambda: _logged(logs, "lost the lease; another worker has it"),
                what=f"the worker to give the event up; logged: {logs}",
            )
        finally:
            await worker.stop(grace_s=1)
    # Neither failed nor settled: B's claim stands as it made it (one failure: A's lease
    # ran out), and no error was logged for it.
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT state, lease_owner, failures, attempts FROM alert_events")
    finally:
        await conn.close()
    assert dict(row) == {"state": "claimed", "lease_owner": "b", "failures": 1, "attempts": 2}
    assert not [e for e in logs if e["log_level"] == "error"]


async def _logged(logs: list[MutableMapping[str, Any]], message: str) -> bool:
    return any(e["event"] == message for e in logs)


async def test_a_fenced_transaction_still_open_holds_the_event_from_every_claim(
    store: Store, database_url: str
) -> None:
    """What a fenced write costs when its transaction stalls before its COMMIT (a connection
    that stalls between its statements, or a COMMIT held in the network): its key-share lock on
    the event holds to the end of the transaction, so every claim skips the event (SKIP
    LOCKED), its lease run out or not, and the alert's later events wait behind it. Nothing
    counts or says so. It ends when the transaction does: here by PostgreSQL's own
    ``idle_in_transaction_session_timeout``, which the store does not set (without it, a
    session whose client is gone lasts until TCP finds the peer dead)."""
    await store.insert_events([new_event(1), new_event(1, starts_at="2026-11-25T10:05:00Z")])
    event_id = await _claim(store, "a")
    a = await asyncpg.connect(database_url)
    try:
        await a.execute("BEGIN")
        # The first statement of A's fenced transaction: the check, and its lock.
        held = f"SELECT ok FROM ({held_sql('$1', '$2', '$3', '$4')}) held"
        assert await a.fetchval(held, "event", event_id, "a", 1)
        async with store._tx() as conn:
            await conn.execute(
                "UPDATE alert_events SET lease_until = remediator_now() - interval '1 second'"
                " WHERE id = $1",
                event_id,
            )
        assert await store.claim_events("b", 5, 60.0) == []
        # PostgreSQL ends A's session once it idles 0.5 s in its transaction: the event is free.
        await a.execute("SET idle_in_transaction_session_timeout = '500ms'")
        (claimed,) = await eventually(lambda: store.claim_events("b", 5, 60.0), what="b's claim")
        assert (claimed.event.id, claimed.failures) == (event_id, 1)
        assert await _closed(a)
    finally:
        await a.close()


async def _closed(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return True
    return False
