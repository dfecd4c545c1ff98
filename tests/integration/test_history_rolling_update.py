"""A replica of the release before 0037 still reads the engine's history from a database a new
replica has migrated: a rolling update runs both side by side until the last old pod is
replaced. 0037 gave ``engine_histories`` two parameters more; its function of 18 (0030 to
0036) is kept beside it for one release, and reads as it did (dropped, every history read of
an old replica failed for the rest of the rollout, each event retried or dead)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from receiver.store.history import HISTORY_CALL, batch_arguments
from receiver.store.migrate import migrate

pytestmark = pytest.mark.postgres

# The call of the release before 0037 (receiver/store/history_sql.py as it was then).
CALL_BEFORE_0037 = (
    "SELECT * FROM engine_histories(" + ", ".join(f"${n}" for n in range(1, 19)) + ")"
)

_RUNS = """
INSERT INTO runs (rule, fingerprint, starts_at, alertname, target_kind, target_namespace,
                  target_name, outcome, created_at)
SELECT 'restart', 'fp-' || i, '2026-01-01T00:00:00Z', 'HighMemory', 'Deployment', 'shop',
       'web', 'dry_run', now() - i * interval '1 minute'
FROM generate_series(1, 5) AS i
"""


def _read(now: Any) -> tuple[Any, ...]:
    """A read of episode fp-1 (its run is stored), counting the pair's earlier runs."""
    pair = [["Deployment"], ["shop"], ["web"], ["restart"]]
    none: list[list[str]] = [[], [], [], []]
    return ("fp-1", "2026-01-01T00:00:00Z", 0, 3600.0, now, *pair, *none, 10, None, 10)


def _rows(rows: list[asyncpg.Record]) -> list[tuple[str, str]]:
    return sorted((r["part"], r["fingerprint"]) for r in rows)


async def test_a_replica_of_the_release_before_reads_after_0037(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        await conn.execute(_RUNS)
        now = await conn.fetchval("SELECT now()")
        arguments = batch_arguments([_read(now)])
        before = await conn.fetch(CALL_BEFORE_0037, *arguments[:18])
        new = await conn.fetch(HISTORY_CALL, *arguments)
    finally:
        await conn.close()
    # The same rows: with no event id and a pair's limit of the read's, 0037's read is the
    # one before it.
    assert _rows(before) == _rows(new)
    assert [part for part, _ in _rows(new)].count("recent") == 5  # the pair's five runs
