"""The storm bench's count of commits ends even when the database never goes quiet (two
``serve`` processes' background work kept it waiting for ever: bench/storm_figures.py), and
still waits for the counters to settle when it does. Against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import pytest

from bench import storm_figures
from bench.storm_figures import Monitor

pytestmark = pytest.mark.postgres


async def _commit_forever(database_url: str) -> None:
    # A connection each time: a backend publishes its counters when it exits, while a long-lived
    # one publishes them at most once a second (and lazily), which can look quiet.
    while True:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("SELECT 1")  # a transaction of its own: a commit counted
        finally:
            await conn.close()


async def test_the_commit_count_is_taken_after_a_bounded_wait_on_a_busy_database(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storm_figures, "XACTS_READINGS", 2, raising=False)
    busy = asyncio.create_task(_commit_forever(database_url))
    conn = await asyncpg.connect(database_url)
    try:
        monitor = Monitor(conn, "2026-01-01T00:00:00Z", "bench_monitor")
        began = time.perf_counter()
        await asyncio.wait_for(monitor.transactions(), timeout=30)
        waited = time.perf_counter() - began
    finally:
        busy.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await busy
        await conn.close()
    # The first reading and two more, 1.5 s apart, none of them settled.
    assert 3.0 <= waited < 10.0
