"""Intake's writer keeps one connection for its batches (receiver.store.bounded.HeldConnection),
against a real PostgreSQL: the same session from one batch to the next, given back when the
writer is done or a batch fails, and replaced when the server ended it between two batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from receiver.intake import Intake, IntakeResult
from receiver.store import HeldConnection, NewEvent, Store
from tests.support import payloads
from tests.support.polling import current, eventually

pytestmark = pytest.mark.postgres


def _note(seed: str) -> Any:
    return payloads.notification(
        payloads.alert({"alertname": "Held", "namespace": "shop", "pod": seed})
    )


async def _terminate(database_url: str, pid: int) -> None:
    """End the session ``pid`` from another connection, as an operator (or a failover) would."""
    admin = await asyncpg.connect(database_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


def _queued(intake: Intake) -> int:
    """Notifications waiting in the batcher for its writer (white-box)."""
    assert intake._batcher is not None
    return len(intake._batcher._queue)


def _ended(conn: Any) -> Any:
    """A probe: whether the client has seen the session of pool connection ``conn`` end
    (asyncpg then detaches the proxy and gives its connection back to the pool by itself)."""

    async def probe() -> bool:
        return conn._con is None or bool(conn._con.is_closed())

    return probe


def _all_idle(store: Store) -> bool:
    """Every connection of the store's pool is back in it (white-box: asyncpg's pool)."""
    pool = store._pool
    return bool(pool.get_idle_size() == pool.get_size())


async def test_calls_share_one_session_until_released(store: Store) -> None:
    held = store.held_connection()
    pids = []
    for _ in range(3):
        async with held.within(5.0) as conn:
            pids.append(await conn.fetchval("SELECT pg_backend_pid()"))
    assert len(set(pids)) == 1
    assert not _all_idle(store)
    await held.release()
    assert _all_idle(store)
    await held.release()  # nothing kept: nothing to do


async def test_a_failed_call_gives_its_connection_back(store: Store) -> None:
    held = store.held_connection()
    with pytest.raises(asyncpg.UndefinedTableError):
        async with held.within(5.0) as conn:
            await conn.fetch("SELECT * FROM no_such_table")
    assert _all_idle(store)
    async with held.within(5.0) as conn:
        assert await conn.fetchval("SELECT 1") == 1
    await held.release()


async def test_a_session_ended_between_calls_is_replaced(store: Store, database_url: str) -> None:
    held = store.held_connection()
    async with held.within(5.0) as conn:
        first = await conn.fetchval("SELECT pg_backend_pid()")
    await _terminate(database_url, first)
    await eventually(_ended(conn), what="the client saw its session end")
    async with held.within(5.0) as again:
        second = await again.fetchval("SELECT pg_backend_pid()")
    assert second != first
    await held.release()
    assert _all_idle(store)


class _PacedStore(Store):
    """The real store; each write waits for a permit, and ``sessions`` holds the backend pid
    each write ran on and the connection it kept (white-box)."""

    permits: asyncio.Queue[None]
    writing: list[int]
    sessions: list[tuple[int, Any]]

    async def insert_event_groups(
        self,
        groups: Sequence[Sequence[NewEvent]],
        *,
        timeout_s: float = 5.0,
        held: HeldConnection | None = None,
    ) -> list[tuple[int, int]]:
        self.writing.append(len(groups))
        await self.permits.get()
        results = await super().insert_event_groups(groups, timeout_s=timeout_s, held=held)
        assert held is not None
        async with held.within(timeout_s) as conn:
            self.sessions.append((conn.get_server_pid(), conn))
        return results


async def test_the_writer_reconnects_when_its_session_was_ended_between_batches(
    store: Store, database_url: str
) -> None:
    paced = _PacedStore(store._pool, store.dsn)
    paced.permits, paced.writing, paced.sessions = asyncio.Queue(), [], []
    intake = Intake(paced, max_in_flight=1)
    first = asyncio.create_task(intake.accept(_note("first")))
    await eventually(current(lambda: paced.writing), lambda w: w == [1])
    later = [asyncio.create_task(intake.accept(_note(f"later-{i}"))) for i in range(2)]
    await eventually(current(lambda: _queued(intake)), lambda n: n == 2)
    paced.permits.put_nowait(None)
    # The first batch is written, and the writer holds the other two at the permit, its
    # connection kept: the server ends that session meanwhile.
    await eventually(current(lambda: paced.writing), lambda w: w == [1, 2])
    [(pid, conn)] = paced.sessions
    await _terminate(database_url, pid)
    await eventually(_ended(conn), what="the client saw its session end")
    paced.permits.put_nowait(None)
    results = await asyncio.wait_for(asyncio.gather(first, *later), timeout=10)
    assert results == [IntakeResult(1, 0)] * 3
    assert paced.sessions[1][0] != pid
    await asyncio.wait_for(intake.drain(), timeout=5)
    assert _all_idle(store)  # the writer gave its connection back when its queue was empty
    assert await store.queue_depth() == 3


async def test_a_busy_writer_writes_its_batches_on_one_session(store: Store) -> None:
    paced = _PacedStore(store._pool, store.dsn)
    paced.permits, paced.writing, paced.sessions = asyncio.Queue(), [], []
    intake = Intake(paced, max_in_flight=1)
    first = asyncio.create_task(intake.accept(_note("one")))
    await eventually(current(lambda: paced.writing), lambda w: w == [1])
    later = [asyncio.create_task(intake.accept(_note(f"two-{i}"))) for i in range(2)]
    await eventually(current(lambda: _queued(intake)), lambda n: n == 2)
    paced.permits.put_nowait(None)
    paced.permits.put_nowait(None)
    assert (
        await asyncio.wait_for(asyncio.gather(first, *later), timeout=10)
        == [IntakeResult(1, 0)] * 3
    )
    assert paced.writing == [1, 2]
    assert len({pid for pid, _ in paced.sessions}) == 1
    await asyncio.wait_for(intake.drain(), timeout=5)
    assert _all_idle(store)


async def test_the_connection_outlives_a_writer_then_goes_back_when_idle(store: Store) -> None:
    """One notification after another: each its own writer, all on one session; given back
    once the writers stop coming (no drain: a store closed without one does not wait long)."""
    paced = _PacedStore(store._pool, store.dsn)
    paced.permits, paced.writing, paced.sessions = asyncio.Queue(), [], []
    intake = Intake(paced)
    for i in range(3):
        paced.permits.put_nowait(None)
        assert await intake.accept(_note(f"alone-{i}")) == IntakeResult(1, 0)
    assert paced.writing == [1, 1, 1]
    # The same connection, not merely the same session: asyncpg hands out a new proxy at
    # each acquire, whichever of its connections it is.
    first = paced.sessions[0][1]
    assert all(conn is first for _, conn in paced.sessions)
    await eventually(current(lambda: _all_idle(store)), what="the connection given back")


async def test_an_idle_release_due_as_a_call_starts_never_takes_its_connection(
    store: Store,
) -> None:
    """The idle timer fires (the loop was busy, e.g. parsing a large webhook) and, before the
    release it starts has run, the next call takes the kept connection: the release must not
    hand that connection back to the pool under the call. It did, and the call's statement
    failed with "connection was closed in the middle of operation", answered 503 for every
    notification of the batch. The order of events is set with the loop's own scheduling: the
    call is started by a callback that runs before the timer's, so it runs before the release
    task the timer's callback creates."""
    held = store.held_connection()
    async with held.within(5.0) as conn:
        await conn.fetchval("SELECT 1")
    held.release_later(0.0)
    loop = asyncio.get_running_loop()
    calls: list[asyncio.Task[Any]] = []

    async def call() -> Any:
        async with held.within(5.0) as conn:
            return await conn.fetchval("SELECT pg_sleep(0.05)::text || 'done'")

    # Runs first in the next iteration, ahead of the (due) timer's callback; the task it
    # creates therefore runs ahead of the release task that callback creates.
    loop.call_soon(lambda: calls.append(asyncio.ensure_future(call())))
    await asyncio.sleep(0.01)
    [task] = calls
    assert await task == "done"
    await held.release()
