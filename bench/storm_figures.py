"""What the storm round measures and prints: the queue as SQL sees it, pg_stat_statements,
the runs, the unrelated alerts' latency, CPU and memory of the service's own processes.

The monitor's queries run as a role of their own on one connection, so that
pg_stat_statements and the CPU of PostgreSQL's processes can leave them out.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.common import (
    against,
    cpu_seconds,
    machine,
    machine_ticks,
    percentile,
    tree_cpu_seconds,
    tree_peak_rss_mb,
    where_the_cores_went,
)
from bench.storm_sql import ACTED, ANALYSED, DEPTH, STATEMENTS, STORED, WAL, XACTS

# Issue 12's targets.
DRAIN_TARGET_S = 10.0
UNRELATED_P50_TARGET_MS = 50.0
UNRELATED_P99_TARGET_MS = 250.0
RSS_TARGET_MB = 150.0

# At most this many more readings of the commit counters, 1.5 s apart, before the last is taken.
XACTS_READINGS = 10


@dataclass(frozen=True)
class Acted:
    """An unrelated alert's action, in milliseconds from its POST: ``committed_ms`` until the
    transaction that recorded it committed (NaN when PostgreSQL does not track commit times),
    ``written_ms`` until the time written in the row (that transaction's start); ``what``: the
    run's outcome, or why there is none."""

    committed_ms: float
    written_ms: float
    what: str


def acted(rows: list[Any], posted: dict[str, float]) -> dict[str, Acted]:
    """``rows``: (fingerprint, written, committed or None, what) as bench/storm_sql.py's ACTED
    reads them, times in epoch seconds; ``posted``: the POST times (epoch seconds by
    fingerprint). Returns each alert's ``Acted`` by fingerprint."""

    def ms(at: float | None, fingerprint: str) -> float:
        return math.nan if at is None else (float(at) - posted[fingerprint]) * 1000

    return {str(r[0]): Acted(ms(r[2], str(r[0])), ms(r[1], str(r[0])), str(r[3])) for r in rows}


def poll_interval_s(depth: int) -> float:
    """Seconds until the queue is counted again when ``depth`` events are queued: 20 ms plus
    0.1 ms per event, at most 1 s."""
    return min(1.0, 0.02 + depth * 1e-4)


class Monitor:
    """The bench's one connection to the store (asyncpg ``conn``, logged in as ``role``);
    counts its own transactions so that the database's count can leave them out."""

    def __init__(self, conn: Any, starts_at: str, role: str) -> None:
        self.conn = conn
        self.starts_at = starts_at
        self.role = role
        self.own_xacts = 0
        self.first_event_id = 0
        self.xacts_before = (0, 0)
        self.own_before = 0
        self.last_depth: int | None = None
        self.analysed_before = (0, 0.0)
        self.wal_before = (0, 0, 0)

    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        self.own_xacts += 1
        rows: list[Any] = await self.conn.fetch(sql, *params)
        return rows

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        """The rows of ``sql`` with ``params``, a transaction of the bench's own."""
        return await self._fetch(sql, *params)

    async def depth(self) -> int:
        """Events queued (pending or claimed)."""
        return int((await self._fetch(DEPTH))[0][0])

    async def wait_empty(self, limit_s: float, *, progress: bool = False) -> int:
        """Poll the queue until it is empty or ``limit_s`` passed; the events left.

        The count walks the queued events (10 ms at 10,000 on a 2-core machine): it is read
        every 20 ms near the end and up to once a second while thousands are queued, so the
        bench takes little CPU from the service and the drain is timed to about 20 ms."""
        deadline = time.perf_counter() + limit_s
        said, was = time.perf_counter(), None
        while (depth := await self.depth()) > 0 and time.perf_counter() < deadline:
            self.last_depth = depth
            if progress and time.perf_counter() - said >= 5.0:
                rate = f" ({(was - depth) / (time.perf_counter() - said):.0f}/s)" if was else ""
                print(f"[storm] {depth:,} events still queued{rate} …", flush=True)
                said, was = time.perf_counter(), depth
            await asyncio.sleep(poll_interval_s(depth))
        self.last_depth = depth
        return depth

    async def start(self) -> None:
        """Forget the statements so far; note where the storm's events and transactions begin."""
        await self._fetch("SELECT pg_stat_statements_reset()")
        self.first_event_id = int(
            (await self._fetch("SELECT coalesce(max(id), 0) + 1 FROM alert_events"))[0][0]
        )
        self.xacts_before = await self._xacts()
        self.own_before = self.own_xacts
        self.analysed_before = await self._analysed()
        self.wal_before = await self._wal()

    async def _wal(self) -> tuple[int, int, int]:
        row = (await self._fetch(WAL))[0]
        return int(row[0]), int(row[1]), int(row[2])

    async def wal(self) -> tuple[int, int, int]:
        """WAL records, full-page images and bytes written since ``start()``, server-wide."""
        records, fpi, written = await self._wal()
        before = self.wal_before
        return records - before[0], fpi - before[1], written - before[2]

    async def _analysed(self) -> tuple[int, float]:
        row = (await self._fetch(ANALYSED))[0]
        return int(row[0]), float(row[1] or 0.0)

    async def analyses(self) -> tuple[int, float]:
        """How often autovacuum analysed alert_events since ``start()``, and when it last did
        (epoch seconds; 0 when it did not): the claim's plan changes with those statistics."""
        count, last = await self._analysed()
        return count - self.analysed_before[0], last if count > self.analysed_before[0] else 0.0

    async def _xacts(self) -> tuple[int, int]:
        # Backends publish their counters when idle, at most once a second: read until two
        # readings 1.5 s apart agree but for the monitor's own reads.
        # Bounded: a service that never goes quiet (two serve processes' background work)
        # would otherwise keep the bench waiting for ever; the last reading is then as close
        # as it gets.
        row = (await self._fetch(XACTS))[0]
        for _ in range(XACTS_READINGS):
            await asyncio.sleep(1.5)
            again = (await self._fetch(XACTS))[0]
            settled = again[0] - row[0] <= 3 and again[1] == row[1]
            row = again
            if settled:
                break
        return int(row[0]), int(row[1])

    async def transactions(self) -> tuple[int, int]:
        """Commits and rollbacks since ``start()``, the monitor's own left out."""
        commits, rollbacks = await self._xacts()
        # Each monitor statement is a transaction of its own; the last read is not in its count.
        own = self.own_xacts - 1 - self.own_before
        return commits - self.xacts_before[0] - own, rollbacks - self.xacts_before[1]

    async def statements(self) -> list[tuple[int, float, str, bool, float]]:
        """(calls, milliseconds executing, normalised text, run by a PL/pgSQL function,
        milliseconds planning) of every statement since ``start()``, most called first, the
        monitor's left out. A statement a function runs is planned within the function's
        execution: its planning is counted there."""
        rows = await self._fetch(STATEMENTS, self.role)
        return [(int(r[0]), float(r[1]), str(r[2]), bool(r[3]), float(r[4])) for r in rows]

    async def events(self) -> dict[str, int]:
        """The storm's events by state."""
        rows = await self._fetch(
            "SELECT state, count(*) FROM alert_events WHERE id >= $1 GROUP BY state",
            self.first_event_id,
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def runs(self) -> list[tuple[str, str, str, int]]:
        """(rule, outcome, refusing guard or '', count) of the runs of the storm's events."""
        rows = await self._fetch(
            """SELECT rule, outcome, coalesce(refusal_guard, ''), count(*) FROM runs
               WHERE event_id >= $1 GROUP BY 1, 2, 3 ORDER BY 1, 4 DESC""",
            self.first_event_id,
        )
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    async def latencies_ms(self, posted: dict[str, float]) -> dict[str, Acted]:
        """Each alert's action (``acted``) timed from its POST (``posted``: epoch seconds by
        fingerprint); alerts not acted on yet are missing."""
        return acted(await self._fetch(ACTED, list(posted), self.starts_at), posted)

    async def stored_ms(self, posted: dict[str, float]) -> list[float]:
        """Milliseconds from each POST (as ``latencies_ms``) until intake stored the alert."""
        rows = await self._fetch(STORED, list(posted), self.starts_at)
        return [(float(r[1]) - posted[str(r[0])]) * 1000 for r in rows]


@dataclass(frozen=True)
class Usage:
    """CPU seconds so far of the service's process tree, this PostgreSQL's processes (the
    monitor's backend left out), the embedded Redis (the guards' server) and the bench itself:
    together, where the machine's cores went."""

    service: float
    postgres: float
    redis: float
    client: float
    machine: tuple[int, ...]  # machine_ticks

    @classmethod
    def now(cls, service_pid: int, postmaster: int, monitor_backend: int, redis: int) -> Usage:
        return cls(
            tree_cpu_seconds(service_pid),
            tree_cpu_seconds(postmaster) - cpu_seconds(monitor_backend),
            cpu_seconds(redis),
            cpu_seconds(os.getpid()),
            machine_ticks(),
        )

    def since(self, service_pid: int, postmaster: int, monitor_backend: int, redis: int) -> Usage:
        """What was used from this reading until now."""
        now = Usage.now(service_pid, postmaster, monitor_backend, redis)
        return Usage(
            now.service - self.service,
            now.postgres - self.postgres,
            now.redis - self.redis,
            now.client - self.client,
            tuple(a - b for a, b in zip(now.machine, self.machine, strict=True)),
        )


def _ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p):.0f} ms" if values else "n/a"


async def report(
    monitor: Monitor,
    args: argparse.Namespace,
    *,
    settings: str,
    worker: str,
    seed_s: float,
    posted: dict[str, dict[str, float]],
    idle: list[Acted],
    warm_up: list[Acted],
    retries: int,
    times: tuple[float, float, float],
    left: int,
    used: Usage,
    service_pid: int,
    postgres_peak_mb: float,
    service_pss_mb: float,
) -> None:
    """Read the figures from the store and print them beside issue 12's targets.
    ``settings``: the PostgreSQL settings given that the round ran with ('' if none);
    ``worker``: how the service runs its worker (``bench.settings.worker_shape``).
    ``posted``: the unrelated alerts' POST times (epoch seconds by fingerprint) by when they
    came. ``idle``: the idle alerts' actions; ``warm_up``: those of the warm-up alerts posted
    before them, the service's first, in the order posted. ``times``: when the
    first and last notification were taken and when the queue was empty (perf_counter)."""
    first, last, empty = times
    epoch_first = time.time() - (time.perf_counter() - first)
    analyses, analysed_at = await monitor.analyses()
    events = await monitor.events()
    total = sum(events.values())
    runs = await monitor.runs()
    statements = await monitor.statements()
    commits, rollbacks = await monitor.transactions()
    wal_records, wal_fpi, wal_bytes = await monitor.wal()
    acted = {phase: await monitor.latencies_ms(times) for phase, times in posted.items()}
    during = [a.committed_ms for phase in acted.values() for a in phase.values()]
    written = [a.written_ms for phase in acted.values() for a in phase.values()]
    what = Counter(a.what for phase in acted.values() for a in phase.values())
    idle_ms = [a.committed_ms for a in idle]
    unrelated = sum(len(times) for times in posted.values())
    drain = empty - last if not left else math.nan
    service_mb = tree_peak_rss_mb(service_pid)
    sent = sum(s[0] for s in statements if not s[3])
    in_functions = sum(s[0] for s in statements if s[3])
    per = max(total, 1)

    print("\n=== storm results ===")
    print(f"machine: {machine()}")
    if settings:
        print(settings)
    print(
        f"stored before the storm: {args.stored:,} finished events "
        f"(+ {args.stored // 10:,} runs and steps), inserted in {seed_s:.1f} s"
    )
    print(
        f"storm: {args.storm_alerts:,} matched alerts over {args.targets:,} Deployments in "
        f"notifications of {args.batch}, {args.concurrency} at once (the service's "
        f"{worker}), + {unrelated} "
        f"unrelated; posted in {last - first:.1f} s ({args.storm_alerts / (last - first):,.0f} "
        f"alerts/s, {retries} retries)"
    )
    print(
        "events: "
        + ", ".join(f"{n:,} {state}" for state, n in sorted(events.items()))
        + (f"; {left:,} still queued after {args.storm_drain_limit:.0f} s" if left else "")
    )
    print(
        f"settled {total - left:,} events in {empty - first:.1f} s from the first POST: "
        f"{(total - left) / (empty - first):,.0f} events/s"
    )
    print(
        f"autovacuum analysed alert_events {analyses} time{'' if analyses == 1 else 's'} meanwhile"
        + (f", last {analysed_at - epoch_first:.0f} s after the first POST" if analyses else "")
    )
    print("runs:")
    for rule, outcome, guard, n in runs:
        print(f"  {rule:45} {outcome:10} {guard or '':12} {n:7,}")
    print(
        f"unrelated alert, POST to the commit of its action: during the storm p50 "
        f"{_ms(during, 50)}, p99 {_ms(during, 99)} ({len(during)} of {unrelated} acted on: "
        + ", ".join(f"{n} {w}" for w, n in what.most_common())
        + f"); idle p50 {_ms(idle_ms, 50)}"
        + f" ({len(idle_ms)} one at a time after {len(warm_up)} warm-up ones; the first 4 after"
        + f" the service's start: p50 {_ms([a.committed_ms for a in warm_up[:4]], 50)})"
    )
    print(
        f"  to the time written in the row instead (its transaction's start, the figure up to "
        f"stop 37): during the storm p50 {_ms(written, 50)}, p99 {_ms(written, 99)}; idle p50 "
        f"{_ms([a.written_ms for a in idle], 50)}"
    )
    for phase, latencies in acted.items():
        of_phase = [a.committed_ms for a in latencies.values()]
        stored = await monitor.stored_ms(posted[phase])
        print(
            f"  {phase}: {len(of_phase)}, p50 {_ms(of_phase, 50)}, p99 {_ms(of_phase, 99)}"
            f" (of which POST to stored by intake: p50 {_ms(stored, 50)}, p99 {_ms(stored, 99)})"
        )
    print(
        f"SQL per event: {sent / per:.1f} statements sent (intake's and the worker's, from "
        f"pg_stat_statements; the bench's own left out) and {in_functions / per:.1f} run by "
        f"PL/pgSQL functions and triggers, {commits / per:.1f} commits, "
        f"{rollbacks / per:.2f} rollbacks"
    )
    by_time = sorted(statements, key=lambda s: s[1], reverse=True)[:6]
    print(
        "  per event: calls, ms executing, ms planning, statement (the 10 most called, then the "
        "longest; * run by a PL/pgSQL function or trigger)"
    )
    for n, ms, query, server, plan in statements[:10] + [
        s for s in by_time if s not in statements[:10]
    ]:
        print(
            f"  {n / per:6.2f} {ms / per:6.2f} {plan / per:6.2f} {'*' if server else ' '} "
            f"{query[:90]}"
        )
    print(
        f"WAL per event: {wal_records / per:.1f} records, {wal_fpi / per:.2f} full-page images, "
        f"{wal_bytes / per / 1024:.1f} kB (the whole server's, from pg_stat_wal)"
    )
    print(
        f"CPU per event: service {1e6 * used.service / per:.0f} us, PostgreSQL "
        f"{1e6 * used.postgres / per:.0f} us (this bench's postmaster and its children only), "
        f"Redis {1e6 * used.redis / per:.0f} us, bench client {1e6 * used.client / per:.0f} us"
    )
    ours = used.service + used.postgres + used.redis + used.client
    print(f"the cores meanwhile (/proc/stat): {where_the_cores_went(used.machine, ours)}")
    print(
        f"peak memory: service {service_mb:.0f} MB RSS (its processes' peaks summed), "
        f"{service_pss_mb:.0f} MB PSS; PostgreSQL {postgres_peak_mb:.0f} MB PSS (PSS: shared "
        "pages counted once, sampled every 0.5 s)"
    )
    print("targets (issue 12):")
    print(f"  drain from the last notification: {against(drain, DRAIN_TARGET_S, 's')}")
    print(
        f"  unrelated alert p50: {against(percentile(during, 50), UNRELATED_P50_TARGET_MS, 'ms')}"
    )
    print(
        f"  unrelated alert p99: {against(percentile(during, 99), UNRELATED_P99_TARGET_MS, 'ms')}"
    )
    print(f"  peak RSS of the service: {against(service_mb, RSS_TARGET_MB, 'MB')}")
