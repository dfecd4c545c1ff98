"""The storm bench times an unrelated alert's action to the commit of the row that records it
(bench/storm_sql.py, ACTED), not to the time written in it, which is its transaction's start:
against a real PostgreSQL tracking commit times, as the bench runs it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bench.seed import seed
from bench.storm_figures import acted
from bench.storm_sql import ACTED
from receiver.embedded import EmbeddedError, EmbeddedServices, postgres_bin_dir
from receiver.store.migrate import migrate
from tests.support.servers import server_missing

pytestmark = pytest.mark.postgres

# Row 10 of the seed: a matched event, with its dry-run run and step.
FINGERPRINT = "000000000000000a"


@pytest.fixture
async def conn(embedded_dir: Path) -> AsyncIterator[asyncpg.Connection]:
    try:
        postgres_bin_dir()
    except EmbeddedError as exc:
        server_missing(f"embedded PostgreSQL ({exc})")
    settings = {"track_commit_timestamp": "on"}
    async with EmbeddedServices(embedded_dir, redis=False, postgres_settings=settings) as services:
        assert services.database_url is not None
        connection = await asyncpg.connect(services.database_url)
        try:
            await migrate(connection)
            await seed(connection, 10, 1)
            yield connection
        finally:
            await connection.close()


async def _write_then_commit(conn: asyncpg.Connection, sql: str) -> tuple[float, float]:
    """Run ``sql`` in a transaction; returns the epoch seconds after it ran (before COMMIT) and
    after COMMIT."""
    async with conn.transaction():
        await conn.execute(sql)
        before_commit = time.time()
    return before_commit, time.time()


@pytest.mark.parametrize(
    "sql",
    [
        # The run's first step recorded.
        "UPDATE steps SET finished_at = now()",
        # No step recorded: the run's outcome.
        "DELETE FROM steps; UPDATE runs SET finished_at = now()",
        # No run: the event done.
        "DELETE FROM steps; DELETE FROM runs; UPDATE alert_events SET done_at = now()",
    ],
)
async def test_the_action_is_timed_to_its_commit(conn: asyncpg.Connection, sql: str) -> None:
    starts_at = await conn.fetchval(
        "SELECT starts_at FROM alert_events WHERE fingerprint = $1", FINGERPRINT
    )
    before_commit, committed = await _write_then_commit(conn, sql)
    rows = await conn.fetch(ACTED, [FINGERPRINT], starts_at)
    timed = acted(rows, {FINGERPRINT: 0.0})[FINGERPRINT]
    # The row says its transaction's start, before its write ran; the commit came after.
    assert timed.written_ms < before_commit * 1000
    assert before_commit * 1000 <= timed.committed_ms <= committed * 1000
