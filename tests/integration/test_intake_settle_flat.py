"""Intake of alerts no rule matches reads each alert's own runs, not every open run.

A firing no rule matches is stored already done unless its alert has a run open or an undo
waiting for its approval (``receiver.store.occurrences.SETTLED_SQL``). PostgreSQL planned both
checks as hashed subplans, built from every open run and every pending approval (or all of
``runs``, read sequentially) once for each of the three places the statement read the
result: 6,000 index entries of runs_fingerprint_open a statement of 10 unmatched alerts on a
store of 20,000 runs. These tests count what the intake statement read, as PostgreSQL counts
it (pg_stat_user_indexes and pg_stat_user_tables of the one connection that ran it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from receiver.store import NewEvent, Store
from tests.support.events import new_event

OPEN_RUNS = 3000
# Not fewer: on statistics of empty tables, with 300 approvals (a few pages) PostgreSQL still
# reads approvals and steps sequentially for an alert whose runs are closed (300 rows a probe);
# the alert's own runs only, but not yet by index whatever the statistics.
HELD_UNDOS = 3000
STATEMENTS = 6

# ``$1`` open runs of other alerts (fingerprints 'o...'), and ``$2`` closed runs (fingerprints
# 'h...') each with an on_resolved step that waits for its pending approval.
_STORM = """
WITH opened AS (
    INSERT INTO runs (rule, fingerprint, starts_at, alertname, target_kind, target_namespace,
                      target_name, outcome)
    SELECT 'restart', 'o' || lpad(to_hex(i), 15, '0'), '2026-11-25T10:00:00Z', 'Storm',
           'Deployment', 'shop', 'web-' || i, 'verifying'
    FROM generate_series(1, $1::int) AS i
), held AS (
    INSERT INTO runs (rule, fingerprint, starts_at, alertname, target_kind, target_namespace,
                      target_name, outcome, resolved_at)
    SELECT 'restart', 'h' || lpad(to_hex(i), 15, '0'), '2026-11-25T10:00:00Z', 'Storm',
           'Deployment', 'shop', 'web-' || i, 'succeeded', remediator_now()
    FROM generate_series(1, $2::int) AS i
    RETURNING id
), undo AS (
    INSERT INTO steps (run_id, phase, idx, action, needs_approval, outcome)
    SELECT id, 'resolve', 0, 'scale', true, 'awaiting_approval' FROM held
    RETURNING run_id
)
INSERT INTO approvals (run_id, step_idx, rule, target_kind, target_namespace, target_name,
                       action, risk, plan, plan_hash, expires_at)
SELECT run_id, 0, 'restart', 'Deployment', 'shop', 'web', 'scale', 'high', '{}', '',
       remediator_now() + interval '1 hour'
FROM undo
"""

# What this backend has read of ``$1``: index entries, and rows read by sequential scans.
_READS = """
SELECT (SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes WHERE relname = $1),
       (SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables WHERE relname = $1)
"""

_TABLES = ("runs", "approvals", "steps")


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[Store]:
    """A store of one connection: the intake statement and the statistics read after it run
    on the same backend, whose counters pg_stat_force_next_flush publishes."""
    created = await Store.connect(database_url, min_size=1, max_size=1)
    try:
        yield created
    finally:
        await created.close()


async def _reads(store: Store) -> dict[str, tuple[int, int]]:
    """(index entries, sequentially read rows) of each of ``_TABLES`` read so far."""
    async with store._pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        reads: dict[str, tuple[int, int]] = {}
        for table in _TABLES:
            row: Any = await conn.fetchrow(_READS, table)
            reads[table] = (int(row[0]), int(row[1]))
        return reads


def _unmatched(fingerprint: str) -> NewEvent:
    return replace(new_event(fingerprint, alertname="Unmatched"), settled_reason="no rule matches")


@pytest.mark.parametrize("analysed_while_empty", [True, False])
async def test_unmatched_intake_reads_only_the_alerts_own_runs(
    one_connection: Store, analysed_while_empty: bool
) -> None:
    store = one_connection
    if analysed_while_empty:  # a new installation's statistics, and a storm since
        await store._pool.execute("VACUUM (ANALYZE) runs, steps, approvals")
    await store._pool.execute(_STORM, OPEN_RUNS, HELD_UNDOS)
    if not analysed_while_empty:
        await store._pool.execute("VACUUM (ANALYZE) runs, steps, approvals")
    before = await _reads(store)

    # Ten unmatched alerts without runs, one with a run open, and one with its undo held (the
    # last one stored: a sequential scan of approvals would read all of them before it).
    held = "h" + f"{HELD_UNDOS:015x}"
    fingerprints = [f"u{i:015x}" for i in range(10)] + ["o" + f"{1:015x}", held]
    # PostgreSQL plans the first five executions of the prepared statement for their
    # parameters and may keep a generic plan from the sixth: both are counted.
    for _ in range(STATEMENTS):
        await store.insert_events([_unmatched(f) for f in fingerprints])
    after = await _reads(store)

    read = {t: (after[t][0] - before[t][0], after[t][1] - before[t][1]) for t in _TABLES}
    # Each statement: the open run (runs_fingerprint_open), the held run (runs_episode), its
    # approval and its step; nothing of the other open runs nor of the other approvals.
    assert read["runs"] == (STATEMENTS * 2, 0), read
    assert read["approvals"] == (STATEMENTS, 0), read
    assert read["steps"] == (STATEMENTS, 0), read

    rows = await store._pool.fetch(
        "SELECT fingerprint, state FROM alert_events WHERE fingerprint = ANY($1::text[])",
        fingerprints,
    )
    states = {r["fingerprint"]: r["state"] for r in rows}
    assert len(rows) == len(fingerprints)  # the later copies were duplicates
    # Settled unless the alert's run is open or its undo waits for an approval.
    assert {f for f, s in states.items() if s == "pending"} == set(fingerprints[10:])
    assert {states[f] for f in fingerprints[:10]} == {"done"}
