"""The batched history read (engine_histories, migration 0030) returns, for each read of a
batch, exactly the rows the read of one event alone returned before it (``OLD_HISTORY_SQL``,
engine_history as migration 0027 left it), on varied stores built at random from a seed; and
that oracle returns what engine_history itself returned, on the schema before migration 0033
dropped it.

Each store holds runs of a few alerts (fingerprint, startsAt, refire) on a few (rule, target)
pairs: open and closed, undo_deferred, verifying and settling, with steps that changed
something or not, on_resolved steps some with a pending approval (a held undo) and some with a
decided one, resolved events; runs created up to two hours back, so that a read's window and
its limit cut its recent runs. Each batch mixes reads of episodes with runs and without, with
and without pairs, limits of 1 to 1000, with and without a received_at.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import asyncpg
import pytest

from receiver.store import Store
from receiver.store.history import HISTORY_CALL, HISTORY_PLAN_SETTINGS, batch_arguments
from receiver.store.migrate import load_migrations, migrate
from tests.support.old_history import OLD_HISTORY_SQL

pytestmark = pytest.mark.postgres

FINGERPRINTS = ["a" * 16, "b" * 16, "c" * 16]
STARTS = ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"]
RULES = ["restart", "scale"]
TARGETS = [("Deployment", "shop", f"web-{i}") for i in range(3)]
OUTCOMES = ["pending", "running", "awaiting_approval", "verifying", "verified", "succeeded",
            "dry_run", "refused", "failed", "rejected", "expired", "cancelled"]  # fmt: skip
STEP_OUTCOMES = ["ok", "simulated", "interrupted", "started", "failed", "dry_run", "pending",
                 "skipped"]  # fmt: skip
PHASES = ["run", "resolve", "on_failed"]
APPROVAL_STATES = ["pending", "pending", "approved", "cancelled", "rejected"]
SEEDS = range(40)
# The read of one event the oracle stands for, as the service called it before migration 0030.
OLD_CALL = "SELECT * FROM engine_history(" + ", ".join(f"${n}" for n in range(1, 16)) + ")"


async def _build_store(conn: Any, rng: random.Random, now: dt.datetime) -> None:
    """Runs, steps, approvals and resolved events at random (``rng``), created before ``now``."""
    occurrences = {
        (rule, fp, sa, rf)
        for rule in RULES
        for fp in FINGERPRINTS
        for sa in STARTS
        for rf in range(3)
        if rng.random() < 0.3
    }
    for rule, fp, sa, rf in sorted(occurrences):
        kind, ns, name = rng.choice(TARGETS)
        outcome = rng.choice(OUTCOMES)
        closed = rng.random() < 0.5
        run_id = await conn.fetchval(
            """INSERT INTO runs (rule, fingerprint, starts_at, refire, alertname, event_id,
                                 target_kind, target_namespace, target_name, outcome,
                                 created_at, resolved_at, undo_deferred, settle_until,
                                 on_resolved)
               VALUES ($1, $2, $3, $4, 'HighMemory', $5, $6, $7, $8, $9, $10, $11, $12, $13,
                       $14::jsonb)
               RETURNING id""",
            rule,
            fp,
            sa,
            rf,
            rng.choice([None, rng.randrange(1, 1000)]),
            kind,
            ns,
            name,
            outcome,
            # Whole minutes back: some runs of a pair are created at the same time.
            now - dt.timedelta(minutes=rng.randrange(0, 120)),
            now if closed else None,
            closed and rng.random() < 0.4,
            now + dt.timedelta(minutes=5) if outcome == "verifying" and closed else None,
            rng.choice([None, "[]", '[{"action": "kubernetes.scale", "idx": 0}]']),
        )
        for idx in range(rng.randrange(0, 3)):
            for phase in PHASES:
                if rng.random() < 0.5:
                    continue
                step_outcome = rng.choice(STEP_OUTCOMES)
                await conn.execute(
                    """INSERT INTO steps (run_id, phase, idx, action, outcome, may_have_acted)
                       VALUES ($1, $2, $3, 'kubernetes.scale', $4, $5)""",
                    run_id,
                    phase,
                    idx,
                    step_outcome,
                    step_outcome == "failed" and rng.random() < 0.5,
                )
            # An approval of step idx, of whichever phase has one (the read joins on the
            # 'resolve' step: one of a 'run' step's is not a held undo).
            if rng.random() < 0.4:
                await conn.execute(
                    """INSERT INTO approvals (run_id, step_idx, rule, target_kind,
                                              target_namespace, target_name, action, risk,
                                              plan, plan_hash, expires_at, state)
                       VALUES ($1, $2, $3, $4, $5, $6, 'kubernetes.scale', 'low', '{}', 'h',
                               $7, $8)""",
                    run_id,
                    idx,
                    rule,
                    kind,
                    ns,
                    name,
                    now + dt.timedelta(hours=1),
                    rng.choice(APPROVAL_STATES),
                )
    for fp in FINGERPRINTS:
        for sa in STARTS:
            for rf in range(3):
                if rng.random() < 0.2:
                    await conn.execute(
                        """INSERT INTO alert_events (fingerprint, starts_at, refire, status,
                                                     state)
                           VALUES ($1, $2, $3, 'resolved', 'done')""",
                        fp,
                        sa,
                        rf,
                    )


def _pairs(rng: random.Random) -> list[list[str]]:
    """Some (rule, target) pairs, as the four arrays of a read, one of them of no run."""
    known = [(rule, target) for rule in RULES for target in TARGETS]
    known.append(("absent", ("Deployment", "shop", "web-9")))
    chosen = rng.sample(known, rng.randrange(0, 4))
    return [
        [t[0] for _, t in chosen],
        [t[1] for _, t in chosen],
        [t[2] for _, t in chosen],
        [rule for rule, _ in chosen],
    ]


def _read(rng: random.Random, now: dt.datetime) -> tuple[Any, ...]:
    """One read's parameters (``history_arguments``' order), at random: with no event id and
    a pair's limit of the read's, the read before migration 0037, which the oracle's first 14
    parameters ask."""
    limit = rng.choice([1, 2, 3, 1000])
    return (
        rng.choice(FINGERPRINTS),
        rng.choice(STARTS),
        rng.randrange(0, 3),
        rng.choice([30.0, 1800.0, 3600.0, 86400.0]),
        rng.choice([None, now, now - dt.timedelta(minutes=30)]),
        *_pairs(rng),
        *_pairs(rng),
        limit,
        None,
        limit,
    )


def _rows(rows: list[Any]) -> list[dict[str, Any]]:
    """Rows without their tag, in an order the read does not promise (the engine sorts)."""
    found = [{k: v for k, v in dict(r).items() if k != "tag"} for r in rows]
    return sorted(found, key=lambda r: (str(r["part"]), r["pos"] or 0, str(r["id"])))


@pytest.mark.parametrize("seed", SEEDS)
async def test_each_read_of_a_batch_returns_what_it_returned_alone(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    async with store._pool.acquire() as conn:
        tx = conn.transaction(isolation="repeatable_read")
        await tx.start()
        try:
            now = await conn.fetchval("SELECT now()")
            await _build_store(conn, rng, now)
            reads = [_read(rng, now) for _ in range(rng.randrange(1, 12))]
            batch = await conn.fetch(HISTORY_CALL, *batch_arguments(reads))
            await conn.execute(HISTORY_PLAN_SETTINGS)
            alone = [await conn.fetch(OLD_HISTORY_SQL, *read[:14], 0) for read in reads]
        finally:
            await tx.rollback()
    assert {r["tag"] for r in batch} == set(range(len(reads)))
    for tag, rows in enumerate(alone):
        assert _rows([r for r in batch if r["tag"] == tag]) == _rows(rows), (seed, tag)


async def test_the_random_stores_reach_every_part(store: Store) -> None:
    """Across the seeds, the reads find rows of every part: the comparison covers each."""
    parts: set[str] = set()
    async with store._pool.acquire() as conn:
        for seed in SEEDS:
            rng = random.Random(seed)
            tx = conn.transaction()
            await tx.start()
            try:
                now = await conn.fetchval("SELECT now()")
                await _build_store(conn, rng, now)
                reads = [_read(rng, now) for _ in range(rng.randrange(1, 12))]
                rows = await conn.fetch(HISTORY_CALL, *batch_arguments(reads))
                parts |= {r["part"] for r in rows if r["part"] is not None}
                parts |= {"resolved" for r in rows if r["episode_resolved"]}
            finally:
                await tx.rollback()
    assert parts == {"episode", "other", "held", "recent", "settling", "resolved"}


def _odd_reads(rng: random.Random, now: dt.datetime) -> list[tuple[Any, ...]]:
    """Reads whose 'recent' pairs the service never sends: one pair twice, and arrays of
    unequal lengths (unnest pads the shorter with NULLs), where the oracle's inline query and
    remediator_pairs could differ."""
    read = _read(rng, now)
    twice = [["Deployment"] * 2, ["shop"] * 2, ["web-0"] * 2, ["restart"] * 2]
    uneven = [["Deployment", "Deployment"], ["shop"], ["web-0", "web-1"], ["restart", "scale"]]
    return [(*read[:5], *pairs, *read[9:]) for pairs in (twice, uneven)]


async def test_the_oracle_returns_what_engine_history_returned(empty_database_url: str) -> None:
    """On the schema before migration 0033, with engine_history and remediator_pairs still
    there, OLD_HISTORY_SQL (remediator_pairs' query inline) returns engine_history's rows."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version < 33])
        compared = 0
        for seed in SEEDS:
            rng = random.Random(seed)
            tx = conn.transaction(isolation="repeatable_read")
            await tx.start()
            try:
                now = await conn.fetchval("SELECT now()")
                await _build_store(conn, rng, now)
                reads = [_read(rng, now) for _ in range(rng.randrange(1, 12))]
                reads += _odd_reads(rng, now)
                called = [await conn.fetch(OLD_CALL, *read[:14], 0) for read in reads]
                await conn.execute(HISTORY_PLAN_SETTINGS)
                alone = [await conn.fetch(OLD_HISTORY_SQL, *read[:14], 0) for read in reads]
            finally:
                await tx.rollback()
            for n, (rows, expected) in enumerate(zip(alone, called, strict=True)):
                assert _rows(rows) == _rows(expected), (seed, n)
                compared += sum(r["part"] == "recent" for r in expected)
    finally:
        await conn.close()
    assert compared > 0  # the part whose pairs changed form returned rows
