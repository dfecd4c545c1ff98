"""The history read's 'other' part reads an alert's open runs, not its closed occurrences.

The part (the alert's runs of other occurrences still open, or whose undo waits: migration
0026) walks the partial ``runs_fingerprint_open``, which holds open runs only. Any index of
all runs led by the fingerprint serves the same condition and reads every closed run of the
alert too: the unique ``runs_once_per_occurrence`` put as (fingerprint, starts_at, refire,
rule), tried twice (stops 29 and 39) to let ``runs_episode`` go, was what the function's plan
took on tables analysed while empty (docs/performance-history.md). These tests count the index
entries of ``runs`` the function reads (``pg_stat_user_indexes``), on a plan made on empty,
analysed-empty and analysed tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from receiver.store import Store
from receiver.store.history import HISTORY_CALL, batch_arguments, history_arguments
from tests.support.events import alert_event

pytestmark = pytest.mark.postgres

ALERT = "a" * 16

# ``$1`` runs of the alert ``$2``, one an occurrence (starts_at a second apart, the first
# ``$5`` seconds into 2026), of the rule "restart" on web-0, closed unless ``$3``; and ``$4``
# open runs of other alerts (a storm).
_RUNS = """
INSERT INTO runs (rule, fingerprint, starts_at, alertname, target_kind, target_namespace,
                  target_name, outcome, dry_run, resolved_at)
SELECT 'restart', $2, to_char(timestamptz '2026-01-01' + make_interval(secs => $5 + i),
                              'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       'HighMemoryUsage', 'Deployment', 'shop', 'web-0', 'succeeded', true,
       CASE WHEN $3 THEN NULL ELSE remediator_now() END
FROM generate_series(1, $1::int) AS i
UNION ALL
SELECT 'restart', lpad(to_hex(i), 16, '0'), '2026-11-25T10:00:00Z', 'HighMemoryUsage',
       'Deployment', 'shop', 'web-' || (i % 50), 'refused', true, NULL
FROM generate_series(1, $4::int) AS i
"""


@pytest.fixture
async def one(database_url: str) -> AsyncIterator[Store]:
    """A store of one connection: what it reads is counted on the backend that counts it."""
    created = await Store.connect(database_url, min_size=1, max_size=1)
    try:
        yield created
    finally:
        await created.close()


async def _entries_read(conn: Any) -> int:
    """Index entries of ``runs`` read on this database so far, this connection's counted (a
    backend publishes its counters when asked to: pg_stat_force_next_flush)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    read = await conn.fetchval(
        "SELECT coalesce(sum(idx_tup_read), 0)::bigint FROM pg_stat_user_indexes"
        " WHERE relname = 'runs'"
    )
    return int(read)


async def _history_reads(conn: Any, args: tuple[Any, ...]) -> tuple[list[Any], int]:
    """The rows of the history function called with ``args`` and the index entries of runs
    it read."""
    before = await _entries_read(conn)
    rows = await conn.fetch(HISTORY_CALL, *args)
    return list(rows), await _entries_read(conn) - before


@pytest.mark.parametrize("planned", ["on an empty table", "analysed empty", "analysed"])
async def test_the_other_part_reads_the_alerts_open_runs_not_its_closed_occurrences(
    one: Store, planned: str
) -> None:
    # An alert that fired 300 times, each occurrence's run closed, and one earlier occurrence
    # whose run is still open (its resolution was lost), among a storm's 2,000 open runs. A
    # new occurrence's read finds that open run in the 'other' part, one index entry read.
    # Through an index of all the alert's runs (the unique index put fingerprint first, which
    # the plan made on analysed empty tables took) it read the 300 closed runs too.
    event = alert_event(fingerprint=ALERT, starts_at="2026-11-25T12:00:00Z")
    args = batch_arguments([history_arguments(event, 3600, [], [], 1000)])
    async with one._pool.acquire() as conn:
        if planned == "analysed empty":
            await conn.execute("VACUUM (ANALYZE) runs")
        if planned != "analysed":
            await conn.fetch(HISTORY_CALL, *args)  # the plan is made now and kept
        await conn.execute(_RUNS, 300, ALERT, False, 2000, 0)
        await conn.execute(_RUNS, 1, ALERT, True, 0, 999)
        if planned == "analysed":
            await conn.execute("VACUUM (ANALYZE) runs")
        rows, read = await _history_reads(conn, args)
    assert [(r["part"], r["starts_at"]) for r in rows] == [("other", "2026-01-01T00:16:40Z")]
    assert read == 1
