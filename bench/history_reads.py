"""``python -m bench.history_reads``: PostgreSQL's CPU per engine history read, the batched
read (engine_histories, migration 0030) against the one it replaced (engine_history, one
execution a read, sent with asyncpg's ``fetchmany`` as the worker did), in turns A B A B.

On a PostgreSQL of its own, migrated but for 0033 (which drops engine_history), seeded as the
storm round's (bench/seed.py: ``--stored`` finished events, a run of one in ten) and with a
storm's runs (``--storm`` recent dry-run runs with a step each, over the seed's targets), each
turn reads the pasts of ``--reads`` storm events in batches of 8 and 16, as the worker sends
them: one (rule, target) pair to repeat and one to settle each, the episode's run found. CPU is
the backend's, from /proc/<pg_backend_pid>/schedstat (nanoseconds run), and the client's
(``time.process_time``). Before the turns, ``--explain`` prints the batched read's plan for a
batch of 8 and engine_history's for one read (EXPLAIN ANALYZE of the generic plans, with the
functions' settings).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import median, run_ns, workdir
from bench.seed import NAMESPACE, RULE, seed
from receiver.embedded import EmbeddedServices
from receiver.store.history_sql import (
    HISTORY_CALL,
    HISTORY_PLAN_SETTINGS,
    HISTORY_SQL,
    batch_arguments,
)
from receiver.store.migrate import Migration, load_migrations, migrate

# The read before migration 0030: one execution of engine_history a read, tagged.
OLD_CALL = "SELECT * FROM engine_history(" + ", ".join(f"${n}" for n in range(1, 16)) + ")"

# A storm's runs: created in the last ten minutes, their one step a dry run; one in three
# verifying, its alert resolved and settling; one in a hundred with an on_resolved step
# waiting for its approval (but with ``--no-held``, as in the storm round).
_STORM_RUNS = """
INSERT INTO runs (rule, fingerprint, starts_at, alertname, target_kind, target_namespace,
                  target_name, outcome, dry_run, created_at, group_key, resolved_at,
                  settle_until)
SELECT $1, 'storm' || lpad(i::text, 11, '0'), '2026-11-25T10:00:00Z', 'HighMemoryUsage',
       'Deployment', $2, 'web-' || (i % $4), CASE WHEN settling THEN 'verifying' ELSE 'dry_run'
       END, NOT settling, now() - interval '10 minutes' * random(), '',
       CASE WHEN settling THEN now() END, CASE WHEN settling THEN now() + interval '5 minutes' END
FROM generate_series(1, $3) AS i, LATERAL (SELECT i % 3 = 0 AS settling) AS s
"""
_STORM_STEPS = """
INSERT INTO steps (run_id, phase, idx, action, outcome)
SELECT id, 'run', 0, 'kubernetes.rollout_restart', 'dry_run' FROM runs
WHERE fingerprint LIKE 'storm%'
UNION ALL
SELECT id, 'resolve', 0, 'kubernetes.scale', 'pending' FROM runs
WHERE fingerprint LIKE 'storm%' AND fingerprint LIKE '%00'
"""
_STORM_APPROVALS = """
INSERT INTO approvals (run_id, step_idx, rule, target_kind, target_namespace, target_name,
                       action, risk, plan, plan_hash, expires_at)
SELECT run_id, 0, $1, 'Deployment', $2, 'web-0', 'kubernetes.scale', 'low', '{}', '',
       now() + interval '1 hour'
FROM steps WHERE phase = 'resolve'
"""

# The migration that drops engine_history and the remediator_pairs it calls.
DROPS_OLD_READ = 33


def migrations() -> list[Migration]:
    """The bench's own database's migrations: every one but 0033, so that it keeps the read
    before 0030 (engine_history) to measure the batched read against."""
    return [m for m in load_migrations() if m.version != DROPS_OLD_READ]


Send = Callable[[asyncpg.Connection, Sequence[tuple[Any, ...]]], Awaitable[int]]


async def _old(conn: asyncpg.Connection, reads: Sequence[tuple[Any, ...]]) -> int:
    rows = await conn.fetchmany(OLD_CALL, [(*read, tag) for tag, read in enumerate(reads)])
    return len(rows)


async def _new(conn: asyncpg.Connection, reads: Sequence[tuple[Any, ...]]) -> int:
    return len(await conn.fetch(HISTORY_CALL, *batch_arguments(reads)))


# The event id of every read: later than any stored event's, so the runs of no event are left
# out, as engine_history (which has no such parameter) leaves none out.
_LATEST_EVENT = 2**62


def _reads(count: int, storm: int, targets: int) -> list[tuple[Any, ...]]:
    """``count`` reads of storm events' pasts, as engine_history takes them: the first 14 of
    ``history_arguments``' parameters (``_batched`` adds the two the batched read has since)."""
    now = dt.datetime.now(dt.UTC)
    made = []
    for n in range(count):
        i = n % storm + 1
        pair = [["Deployment"], [NAMESPACE], [f"web-{i % targets}"], [RULE]]
        made.append((f"storm{i:011d}", "2026-11-25T10:00:00Z", 0, 3600.0, now, *pair, *pair, 1000))
    return made


def _batched(reads: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The same reads in ``history_arguments``' whole order: the event's id (``_LATEST_EVENT``)
    and the earlier runs read per repeat pair (the limit, as engine_history reads them)."""
    return [(*read, _LATEST_EVENT, read[13]) for read in reads]


async def _turn(
    conn: asyncpg.Connection, pid: int, send: Send, reads: list[tuple[Any, ...]], batch: int
) -> tuple[float, float, int]:
    """Backend and client CPU µs per read, and the rows, of ``reads`` sent ``batch`` at a time."""
    rows = 0
    backend, client = run_ns(pid) / 1e9, time.process_time()
    for first in range(0, len(reads), batch):
        rows += await send(conn, reads[first : first + batch])
    backend, client = run_ns(pid) / 1e9 - backend, time.process_time() - client
    return backend / len(reads) * 1e6, client / len(reads) * 1e6, rows


async def _explain(conn: asyncpg.Connection, reads: list[tuple[Any, ...]]) -> None:
    """The batched read's generic plan for 8 reads, and engine_history's for the first of
    them (its body as the database has it), run, as the functions run them."""
    source = await conn.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'engine_history'")
    match = re.search(r"RETURN QUERY(.*);\s*END", source, re.S)
    assert match, source[:200]
    for name, sql, args in (
        ("batch_history", HISTORY_SQL, batch_arguments(_batched(reads[:8]))),
        ("old_history", match[1], (*reads[0], 0)),
    ):
        print(f"-- {name}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE {name} AS {sql}")
        async with conn.transaction():
            await conn.execute(HISTORY_PLAN_SETTINGS)
            literals = [
                await conn.fetchval("SELECT quote_nullable($1::text)", _array(a)) for a in args
            ]
            plan = await conn.fetch(
                f"EXPLAIN (ANALYZE, COSTS OFF, BUFFERS) EXECUTE {name} ({', '.join(literals)})"
            )
        print("\n".join(r[0] for r in plan))
        await conn.execute(f"DEALLOCATE {name}")
        await conn.execute("RESET plan_cache_mode")


def _array(value: Any) -> str:
    """A parameter as PostgreSQL's text input reads it."""
    if isinstance(value, list):
        return "{" + ",".join(f'"{item}"' for item in value) + "}"
    return str(value)


async def run(args: argparse.Namespace) -> None:
    with workdir("remediator-history-") as work:
        async with EmbeddedServices(Path(work) / "services", redis=False) as services:
            assert services.database_url is not None
            conn = await asyncpg.connect(services.database_url)
            try:
                await migrate(conn, migrations())
                await seed(conn, args.stored, args.targets)
                await conn.execute(_STORM_RUNS, RULE, NAMESPACE, args.storm, args.targets)
                await conn.execute(_STORM_STEPS)
                if args.held:
                    await conn.execute(_STORM_APPROVALS, RULE, NAMESPACE)
                await conn.execute("VACUUM (ANALYZE) runs")
                await conn.execute("VACUUM (ANALYZE) steps")
                await conn.execute("VACUUM (ANALYZE) approvals")
                reads = _reads(args.reads, args.storm, args.targets)
                if args.explain:
                    await _explain(conn, reads)
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                await _measure(conn, pid, reads, args.turns)
            finally:
                await conn.close()


async def _measure(
    conn: asyncpg.Connection, pid: int, reads: list[tuple[Any, ...]], turns: int
) -> None:
    """``turns`` A B pairs for each batch size; prints each turn and the medians. Raises
    AssertionError when the two reads do not find the same rows (then the figures would
    compare two different reads)."""
    given = {"old": reads, "new": _batched(reads)}
    for batch in (8, 16):
        old_rows = await _old(conn, reads[:batch])  # each plan cached before the turns
        new_rows = await _new(conn, given["new"][:batch])
        assert old_rows == new_rows, f"old read {old_rows} rows, batched {new_rows}"
        figures: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
        for turn in range(turns):
            for name, send in (("old", _old), ("new", _new)):
                backend, client, rows = await _turn(conn, pid, send, given[name], batch)
                figures[name].append((backend, client))
                print(
                    f"batch {batch:2d} turn {turn} {name}: backend {backend:6.1f} µs/read, "
                    f"client {client:6.1f} µs/read, {rows} rows",
                    flush=True,
                )
        old_b, new_b = (median(b for b, _ in figures[k]) for k in ("old", "new"))
        old_c, new_c = (median(c for _, c in figures[k]) for k in ("old", "new"))
        print(
            f"batch {batch:2d} median backend: old {old_b:.1f}, new {new_b:.1f} µs/read "
            f"({(new_b - old_b) / old_b if old_b else float('nan'):+.0%}); client: old"
            f" {old_c:.1f}, new {new_c:.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history_reads", description=__doc__)
    parser.add_argument("--stored", type=int, default=1_000_000, help="events seeded")
    parser.add_argument("--targets", type=int, default=1000, help="Deployments of the seed")
    parser.add_argument("--storm", type=int, default=3000, help="recent runs of the storm")
    parser.add_argument("--reads", type=int, default=4000, help="reads a turn")
    parser.add_argument("--turns", type=int, default=3, help="A B pairs per batch size")
    parser.add_argument("--explain", action="store_true", help="print the batched plan")
    parser.add_argument(
        "--no-held",
        dest="held",
        action="store_false",
        help="no pending approvals (by default one storm run in a hundred has one)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
