"""Migration 0033 drops the history read of one event at a time (engine_history) and the
remediator_pairs it called: a migrated database has neither, a database of the release before
loses both, and the batched read (engine_histories) still reads. The history bench's database
keeps the old read to measure against (bench/history_reads.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from bench.history_reads import OLD_CALL, migrations
from receiver.store.history import HISTORY_CALL, batch_arguments
from receiver.store.migrate import load_migrations, migrate

pytestmark = pytest.mark.postgres

DROPPED = ["engine_history", "remediator_pairs"]

_FUNCTIONS = """
SELECT DISTINCT proname FROM pg_proc WHERE proname = ANY($1::text[]) ORDER BY proname
"""

_RUN = """
INSERT INTO runs (rule, fingerprint, starts_at, alertname, target_kind, target_namespace,
                  target_name, outcome)
VALUES ('restart', 'fp', '2026-01-01T00:00:00Z', 'HighMemory', 'Deployment', 'shop', 'web',
        'dry_run')
"""


def _read(now: dt.datetime) -> tuple[Any, ...]:
    """A read of the run above's episode, its pair to repeat and none to settle."""
    pair = [["Deployment"], ["shop"], ["web"], ["restart"]]
    none: list[list[str]] = [[], [], [], []]
    return ("fp", "2026-01-01T00:00:00Z", 0, 3600.0, now, *pair, *none, 10, None, 10)


async def _functions(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(_FUNCTIONS, [*DROPPED, "engine_histories"])
    return [row["proname"] for row in rows]


async def test_a_migrated_database_has_neither_function(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await _functions(conn) == ["engine_histories"]
    finally:
        await conn.close()


async def test_0033_drops_both_from_a_database_of_the_release_before(
    empty_database_url: str,
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version < 33])
        assert await _functions(conn) == ["engine_histories", *DROPPED]
        await conn.execute(_RUN)
        now = await conn.fetchval("SELECT now()")
        assert await migrate(conn) == [m.version for m in load_migrations() if m.version >= 33]
        assert await _functions(conn) == ["engine_histories"]
        rows = await conn.fetch(HISTORY_CALL, *batch_arguments([_read(now)]))
    finally:
        await conn.close()
    assert sorted(r["part"] for r in rows) == ["episode", "recent"]


async def test_the_history_bench_database_keeps_the_old_read(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, migrations())
        await conn.execute(_RUN)
        now = await conn.fetchval("SELECT now()")
        old = await conn.fetch(OLD_CALL, *_read(now)[:14], 0)
        new = await conn.fetch(HISTORY_CALL, *batch_arguments([_read(now)]))
    finally:
        await conn.close()
    assert sorted(r["part"] for r in old) == sorted(r["part"] for r in new)
    assert sorted(r["part"] for r in new) == ["episode", "recent"]
