"""The engine's history read costs the runs of the targets it asks about, not the storm's.

A storm of one rule over many targets creates a run per alert. Each event's history read asks
for the recent runs of its own (rule, target) pairs; it used to walk every recent run of the
rule (or all of ``runs``), so each read grew with the storm. These tests count the rows the
read takes from ``runs`` in the plan PostgreSQL ran (EXPLAIN ANALYZE of the very statement,
with the settings its function runs it with: ``HISTORY_PLAN_SETTINGS``, test_pinned_plans.py).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from receiver.model import Status, Target
from receiver.store import Store
from receiver.store.history import (
    HISTORY_CALL,
    HISTORY_PLAN_SETTINGS,
    HISTORY_SQL,
    batch_arguments,
    history_arguments,
)
from tests.support.events import alert_event, new_event
from tests.support.plans import execute_sql, explain_analyze, rows_read

STORM_TARGETS = 300


async def _storm(store: Store, targets: int) -> list[Target]:
    """One run of the rule "restart" on each of ``targets`` Deployments, three on the first."""
    made = [Target("Deployment", "shop", f"web-{i}") for i in range(targets)]
    for i, target in enumerate(made):
        for repeat in range(3 if i == 0 else 1):
            await store.create_run(
                rule="restart",
                event=alert_event(fingerprint=f"{i:012x}{repeat:04x}"),
                target=target,
                dry_run=True,
            )
    return made


async def test_a_history_read_takes_its_targets_runs_not_the_rules_other_runs(
    store: Store,
) -> None:
    targets = await _storm(store, STORM_TARGETS)
    event = alert_event(fingerprint="f" * 16)
    args = batch_arguments([history_arguments(event, 3600, [("restart", targets[0])], [], 1000)])
    async with store._pool.acquire() as conn, conn.transaction():
        await conn.execute(HISTORY_PLAN_SETTINGS)
        plan = await explain_analyze(conn, HISTORY_SQL, *args)
    # The three runs of web-0, and nothing of the 299 other targets' runs of the same rule.
    assert rows_read(plan, "runs") <= 3, json.dumps(plan, indent=1)

    history = await store.history(event, 3600, repeats=[("restart", targets[0])])
    assert len(history.recent_runs) == 3
    assert {r.target for r in history.recent_runs} == {targets[0]}


async def _plan_cached_before(
    store: Store, args: tuple[Any, ...], meanwhile: Callable[[], Awaitable[object]]
) -> dict[str, Any]:
    """The plan PostgreSQL ran for the read with ``args``, as the service's connection keeps it
    (the one generic plan, with ``HISTORY_PLAN_SETTINGS``): made before ``meanwhile`` stored
    what it stores, run after it."""
    async with store._pool.acquire() as conn:
        execute = await execute_sql(conn, "cached_history", args)
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE cached_history AS {HISTORY_SQL}")
        try:
            async with conn.transaction():
                await conn.execute(HISTORY_PLAN_SETTINGS)
                await conn.execute(execute)
            await meanwhile()
            async with conn.transaction():
                await conn.execute(HISTORY_PLAN_SETTINGS)
                return await explain_analyze(conn, execute)
        finally:
            await conn.execute("DEALLOCATE cached_history")
            await conn.execute("RESET plan_cache_mode")


async def test_the_plan_cached_on_an_empty_table_still_walks_only_the_targets_runs(
    store: Store,
) -> None:
    # The service's statement is planned once, early, and the plan kept (a generic plan): on
    # the statistics of a table that was empty then, whatever a storm has added since.
    event = alert_event(fingerprint="f" * 16)
    first = Target("Deployment", "shop", "web-0")
    args = batch_arguments([history_arguments(event, 3600, [("restart", first)], [], 1000)])
    plan = await _plan_cached_before(store, args, lambda: _storm(store, STORM_TARGETS))
    assert rows_read(plan, "runs") <= 3, json.dumps(plan, indent=1)


async def test_a_plan_cached_on_the_statistics_of_empty_tables_reads_no_storm_rows(
    store: Store,
) -> None:
    # Tables analysed while empty (a new installation; or small, in a quiet hour): on those
    # statistics a sequential scan of one page looks cheapest, for the episode's runs and its
    # resolved event as much as for the recent runs, and the cached plan kept it while a storm
    # filled the tables (autovacuum analyses once a minute at most): every read then scanned
    # runs and alert_events whole, 1.8 ms a read instead of 0.08 (migration 0019).
    for table in ("runs", "steps", "alert_events"):
        await store._pool.execute(f"VACUUM (ANALYZE) {table}")
    event = alert_event(fingerprint="f" * 16)
    first = Target("Deployment", "shop", "web-0")
    args = batch_arguments(
        [history_arguments(event, 3600, [("restart", first)], [("restart", first)], 1000)]
    )

    async def storm_and_its_events() -> None:
        await _storm(store, STORM_TARGETS)
        events = [new_event(i) for i in range(3000)]
        for start in range(0, len(events), 500):
            await store.insert_events(events[start : start + 500])

    plan = await _plan_cached_before(store, args, storm_and_its_events)
    # web-0's three runs; nothing of the episode (it has no run and no resolved event).
    assert rows_read(plan, "runs") <= 3, json.dumps(plan, indent=1)
    assert rows_read(plan, "alert_events") == 0, json.dumps(plan, indent=1)


async def test_the_newest_runs_of_several_pairs_come_back_newest_last_up_to_the_limit(
    store: Store,
) -> None:
    targets = await _storm(store, 4)
    event = alert_event(fingerprint="f" * 16)
    pairs = [("restart", targets[0]), ("restart", targets[2]), ("restart", targets[0])]
    history = await store.history(event, 3600, repeats=pairs)
    # The same pair twice is read once: web-0's three runs and web-2's one.
    assert sorted(r.target.name for r in history.recent_runs) == ["web-0"] * 3 + ["web-2"]
    created = [r.created_at for r in history.recent_runs]
    assert created == sorted(created)  # oldest first, as the engine counts them
    limited = await store.history(event, 3600, repeats=pairs, limit=2)
    assert [r.run_id for r in limited.recent_runs] == [r.run_id for r in history.recent_runs[-2:]]
    assert (await store.history(event, 3600, repeats=[("other", targets[0])])).recent_runs == ()


async def test_a_pairs_recent_runs_are_read_without_the_targets_runs_of_other_rules(
    store: Store,
) -> None:
    # Another rule's many runs on the same target, all in the window: the read of one
    # (rule, target) pair compares the rule in the index (runs_pair_created, migration 0028)
    # and reads from the table only the pair's own runs.
    target = Target("Deployment", "shop", "web-0")
    for i in range(40):
        await store.create_run(
            rule="scale", event=alert_event(fingerprint=f"{i:016x}"), target=target, dry_run=True
        )
    for i in range(2):
        await store.create_run(
            rule="restart", event=alert_event(fingerprint=f"a{i:015x}"), target=target, dry_run=True
        )
    event = alert_event(fingerprint="f" * 16)
    args = batch_arguments([history_arguments(event, 3600, [("restart", target)], [], 1000)])
    async with store._pool.acquire() as conn, conn.transaction():
        await conn.execute(HISTORY_PLAN_SETTINGS)
        plan = await explain_analyze(conn, HISTORY_SQL, *args)
    assert rows_read(plan, "runs") == 2, json.dumps(plan, indent=1)

    history = await store.history(event, 3600, repeats=[("restart", target)])
    assert [r.rule for r in history.recent_runs] == ["restart", "restart"]


async def test_the_settling_runs_of_a_batchs_reads_are_their_pairs_not_the_storms(
    store: Store,
) -> None:
    # A storm whose runs all settle (verifying, their alert resolved), on a plan cached while
    # the tables were empty: each of a batch's reads takes its own pair's settling runs from
    # runs_settling. As a semi-join of runs to the read's pairs, the plan walked every run
    # (runs_created) for each read and compared it to the pairs.
    for table in ("runs", "steps", "alert_events"):
        await store._pool.execute(f"VACUUM (ANALYZE) {table}")
    pairs = [("restart", Target("Deployment", "shop", f"web-{i}")) for i in range(8)]
    args = batch_arguments(
        [
            history_arguments(alert_event(fingerprint=f"e{i:015x}"), 3600, [], [pair], 1000)
            for i, pair in enumerate(pairs)
        ]
    )

    async def settling_storm() -> None:
        await _storm(store, STORM_TARGETS)
        await store._pool.execute(
            """UPDATE runs SET outcome = 'verifying', resolved_at = now(),
                              settle_until = now() + interval '5 minutes'"""
        )

    plan = await _plan_cached_before(store, args, settling_storm)
    # web-0's three runs and one of each of the seven others.
    assert rows_read(plan, "runs") <= 10, json.dumps(plan, indent=1)
    async with store._pool.acquire() as conn:
        rows = await conn.fetch(HISTORY_SQL, *args)
    assert sorted(r["target_name"] for r in rows if r["part"] == "settling") == sorted(
        ["web-0"] * 3 + [f"web-{i}" for i in range(1, 8)]
    )


async def test_a_batch_reads_the_pending_approvals_once_not_once_a_read(store: Store) -> None:
    # Five closed runs whose on_resolved step waits for its approval (held undos): a batch of
    # eight reads finds them once (held_runs) and each read keeps its alert's. Found for each
    # read, the five approvals, their steps and their runs were read eight times.
    targets = await _storm(store, 5)
    await store._pool.execute(
        """WITH held AS (UPDATE runs SET resolved_at = now() WHERE target_name <> 'web-0'
                         RETURNING id, target_name)
           , step AS (INSERT INTO steps (run_id, phase, idx, action, outcome)
                      SELECT id, 'resolve', 0, 'kubernetes.scale', 'pending' FROM held)
           INSERT INTO approvals (run_id, step_idx, rule, target_kind, target_namespace,
                                  target_name, action, risk, plan, plan_hash, expires_at)
           SELECT id, 0, 'restart', 'Deployment', 'shop', target_name, 'kubernetes.scale',
                  'low', '{}', '', now() + interval '1 hour' FROM held"""
    )
    held = await store._pool.fetch("SELECT fingerprint FROM runs WHERE resolved_at IS NOT NULL")
    assert len(held) == 4
    events = [alert_event(fingerprint=r["fingerprint"], starts_at="2026-11-25T11:00:00Z")
              for r in held]  # fmt: skip
    events += [alert_event(fingerprint=f"e{i:015x}") for i in range(4)]
    args = batch_arguments([history_arguments(e, 3600, [], [], 1000) for e in events])
    async with store._pool.acquire() as conn, conn.transaction():
        await conn.execute(HISTORY_PLAN_SETTINGS)
        plan = await explain_analyze(conn, HISTORY_SQL, *args)
        rows = await conn.fetch(HISTORY_SQL, *args)
    assert rows_read(plan, "approvals") == 4, json.dumps(plan, indent=1)
    assert sorted(r["tag"] for r in rows if r["part"] == "held") == [0, 1, 2, 3]
    assert {r["target_name"] for r in rows if r["part"] == "held"} == {t.name for t in targets[1:]}


# Runs of the rule "restart" on a young store: ``$1`` of them, round robin on ``$2``
# Deployments, written 32 a transaction as the worker's group commit writes them (each with its
# transaction's time), a transaction every half second up to ``$3`` seconds ago; their alerts'
# fingerprints start with ``$4``.
_YOUNG_RUNS = """
INSERT INTO runs (rule, fingerprint, starts_at, alertname, target_kind, target_namespace,
                  target_name, outcome, dry_run, created_at)
SELECT 'restart', $4 || lpad(to_hex(i), 15, '0'), '2026-11-25T10:00:00Z', 'HighMemoryUsage',
       'Deployment', 'shop', 'web-' || (i % $2), 'refused', true,
       remediator_now() - make_interval(secs => $3 + (($1 - i) / 32) * 0.5)
FROM generate_series(1, $1::int) AS i
"""

# What the scans of ``$1``'s indexes (or of its index ``$2`` alone) have read on this
# database: how many scans, and how many index entries.
_INDEX_READS = """
SELECT coalesce(sum(idx_scan), 0)::bigint, coalesce(sum(idx_tup_read), 0)::bigint
FROM pg_stat_user_indexes WHERE relname = $1 AND ($2::text IS NULL OR indexrelname = $2)
"""


async def _index_reads(conn: Any, table: str, index: str | None = None) -> tuple[int, int]:
    """``_INDEX_READS`` with what this connection read so far counted: a backend publishes
    its counters when it goes idle, at once when asked to (pg_stat_force_next_flush), and
    each statement here is a transaction of its own, so it reads them afresh."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    row = await conn.fetchrow(_INDEX_READS, table, index)
    return int(row[0]), int(row[1])


@pytest.mark.parametrize(("analysed", "storm_targets"), [(2000, 10), (2000, 100), (0, 10)])
async def test_a_storms_reads_on_a_young_stores_statistics_read_their_pairs_runs_only(
    store: Store, analysed: int, storm_targets: int
) -> None:
    # A young store: 2,000 runs of the last half hour on 10 targets, or none, analysed (as
    # serve's watcher analyses a table grown from nothing, receiver/store/statistics.py); then a
    # storm's 1,000 runs on 10 or 100 targets. On the statistics of 2,000 runs the generic plan
    # of the 'recent' part walked runs_created (or runs_rule_created), every target's runs of
    # the window newest first, for each pair, and kept the pair's (migration 0034): 3,000 rows
    # a read, and each event's read grew with the storm. On those of an empty table it read
    # the rule's runs of the window down runs_rule_created and sorted them (migration 0036).
    await store._pool.execute(_YOUNG_RUNS, analysed, 10, 600.0, "a")
    await store._pool.execute("VACUUM (ANALYZE) runs")
    await store._pool.execute(_YOUNG_RUNS, 1000, storm_targets, 0.0, "b")
    own = analysed // 10 + 1000 // storm_targets  # each of web-0 to web-7's runs in the hour
    pairs = [("restart", Target("Deployment", "shop", f"web-{i}")) for i in range(8)]
    args = batch_arguments(
        [
            history_arguments(alert_event(fingerprint=f"e{i:015x}"), 3600, [pair], [], 1000)
            for i, pair in enumerate(pairs)
        ]
    )
    async with store._pool.acquire() as conn:
        _, before = await _index_reads(conn, "runs")
        rows = await conn.fetch(HISTORY_CALL, *args)  # the function, as the service calls it
        read = (await _index_reads(conn, "runs"))[1] - before

    async def nothing() -> None:
        return None

    plan = await _plan_cached_before(store, args, nothing)  # the same plan, to show
    recent = [r for r in rows if r["part"] == "recent"]
    assert len(recent) == 8 * own
    assert {(r["tag"], r["target_name"]) for r in recent} == {(i, f"web-{i}") for i in range(8)}
    # Read: the eight pairs' runs and nothing of the other targets' (the other parts read
    # none: no run of these episodes, no settling run).
    assert read == 8 * own, json.dumps(plan, indent=1)
    assert rows_read(plan, "runs") == 8 * own, json.dumps(plan, indent=1)


async def test_a_batch_looks_each_reads_resolution_up_once_whatever_it_returns(
    store: Store,
) -> None:
    # Eight reads of 50 recent runs each, four of whose episodes have resolved, on a store of
    # 3,000 resolved events, analysed. Whether an episode resolved was asked for each row the
    # read returned (400 probes of alert_events_dedupe), or, on other statistics, answered
    # from a hash of every resolved event in the store, read whole for each batch (a
    # hashed SubPlan): both grew with the storm or the store (migration 0035).
    await store._pool.execute(
        """INSERT INTO alert_events (fingerprint, starts_at, status, labels, alertname,
                                     group_key, receiver, state, done_at)
           SELECT lpad(to_hex(g), 16, '0'), '2026-01-01T00:00:00Z', 'resolved', '{}', 'Old',
                  'k', 'r', 'done', now()
           FROM generate_series(1, 3000) AS g"""
    )
    events = [alert_event(fingerprint=f"e{i:015x}") for i in range(8)]
    await store.insert_events(
        [new_event(e.fingerprint, Status.RESOLVED, starts_at=e.starts_at) for e in events[::2]]
    )
    await store._pool.execute(_YOUNG_RUNS, 400, 8, 0.0, "a")
    await store._pool.execute("VACUUM (ANALYZE) alert_events")
    await store._pool.execute("VACUUM (ANALYZE) runs")
    pairs = [("restart", Target("Deployment", "shop", f"web-{i}")) for i in range(8)]
    args = batch_arguments(
        [
            history_arguments(e, 3600, [pair], [], 1000)
            for e, pair in zip(events, pairs, strict=True)
        ]
    )
    async with store._pool.acquire() as conn:
        scans, entries = await _index_reads(conn, "alert_events", "alert_events_dedupe")
        rows = await conn.fetch(HISTORY_CALL, *args)
        after = await _index_reads(conn, "alert_events", "alert_events_dedupe")

    async def nothing() -> None:
        return None

    plan = await _plan_cached_before(store, args, nothing)  # the same plan, to show
    assert len(rows) == 400
    assert {(r["tag"], r["episode_resolved"]) for r in rows} == {(i, i % 2 == 0) for i in range(8)}
    # One probe a read, each finding its resolution or none.
    assert (after[0] - scans, after[1] - entries) == (8, 4), json.dumps(plan, indent=1)
