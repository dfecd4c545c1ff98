"""`make bench`: webhook intake throughput, latency and memory, next to a do-nothing ceiling.

Starts PostgreSQL and Redis (the embedded wheels, in a temporary directory), runs the real
``remediator serve`` in its own process against them, and drives it over loopback with an
aiohttp client (bench/loads.py): (1) closed-loop throughput at fixed concurrency, in rounds
where the receiver and the ceiling take turns (medians compared), (2) an open-loop fixed rate
for p99, (3) 100,000 alerts for the server's peak RSS, (4) alerts a rule matches, in rounds
taking turns with the ceiling (bench/intake_matched.py). The same load against a handler that
stores nothing gives the ceiling on this machine. This is a benchmark, not a test: it prints
figures and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

from bench.common import (
    TOKEN,
    flush_latency_ms,
    machine,
    median,
    postmaster_pid,
    server,
    tree_pss_mb,
    tree_rss_mb,
    wait_ready,
    workdir,
)
from bench.intake_matched import matched_rounds, matched_summary
from bench.loads import CpuShare, Figures, closed_loop, measured, open_loop
from bench.settings import (
    add_postgres_setting_argument,
    round_settings,
    settings_note,
    worker_shape,
)
from receiver.embedded import EmbeddedServices
from receiver.embedded.process import free_port

POSTGRES_DATA = Path("postgres", "data")


async def run(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    postgres_settings, applied, _ = round_settings(args.postgres_settings, {})
    if note := settings_note(applied):
        print(note)
    names = ("ceiling", "receiver")
    with (
        workdir("remediator-bench-") as work,
        EmbeddedServices(work / "services", postgres_settings=postgres_settings) as services,
        contextlib.ExitStack() as stack,
    ):
        postmaster = postmaster_pid(work / "services" / POSTGRES_DATA)
        env = dict(os.environ)
        env.update(
            REMEDIATOR_DATABASE_URL=str(services.database_url),
            REMEDIATOR_REDIS_URL=str(services.redis_url),
            REMEDIATOR_WEBHOOK_TOKEN=TOKEN,
            REMEDIATOR_DRY_RUN="true",
            REMEDIATOR_DATA_DIR=str(work / "data"),
            REMEDIATOR_LOG_LEVEL="warning",
        )
        worker = worker_shape(env)
        ports = {name: free_port() for name in names}
        argv = {
            "ceiling": [sys.executable, "-m", "bench.ceiling", str(ports["ceiling"])],
            "receiver": [
                sys.executable,
                "-m",
                "receiver.cli",
                "serve",
                "--port",
                str(ports["receiver"]),
            ],
        }
        procs: dict[str, subprocess.Popen[bytes]] = {}
        urls: dict[str, str] = {}
        for name in names:
            base = f"http://127.0.0.1:{ports[name]}"
            procs[name] = stack.enter_context(server(argv[name], env, work / f"{name}.log"))
            await wait_ready(base + ("/readyz" if name == "receiver" else "/healthz"), procs[name])
            urls[name] = base + "/api/v1/alerts"
            print(f"[{name}] warming up …", flush=True)
            await closed_loop(urls[name], 500, args.concurrency, start=10_000_000)

        # The disk's flush, where PostgreSQL keeps its WAL: the receiver's commits wait for one.
        flush = flush_latency_ms(work / "services")
        # Both servers run throughout and take turns, so a drift of the machine (other tenants,
        # CPU frequency) affects both sides alike; the medians are compared.
        closed: dict[str, list[Figures]] = {name: [] for name in names}
        shares: dict[str, list[CpuShare]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            for name in names:
                print(
                    f"[{name}] closed loop {round_ + 1}/{args.rounds}: {args.requests} "
                    f"notifications, concurrency {args.concurrency} …",
                    flush=True,
                )
                figures, share = await measured(
                    urls[name],
                    args.requests,
                    args.concurrency,
                    round_ * args.requests,
                    (procs[name].pid, postmaster),
                )
                closed[name].append(figures)
                shares[name].append(share)
        opened: dict[str, Figures] = {}
        for name in names:
            print(
                f"[{name}] open loop: {args.rate:.0f} notifications/s for {args.seconds:.0f} s …",
                flush=True,
            )
            opened[name] = await open_loop(urls[name], args.rate, args.seconds, start=20_000_000)
        print(f"[receiver] memory: {args.alerts} alerts in notifications of 10 …", flush=True)
        mem = await closed_loop(
            urls["receiver"], args.alerts // 10, args.concurrency, start=30_000_000, alerts=10
        )
        # The service's processes together (its worker processes, with worker.processes).
        hwm, rss = tree_rss_mb(procs["receiver"].pid)
        pss = tree_pss_mb(procs["receiver"].pid)
        # Last, because each round's backlog keeps the worker busy after its loop: every alert
        # matched by a rule, so the worker plans, guards and records a dry-run for each.
        turns = await matched_rounds(
            urls,
            (procs["receiver"].pid, postmaster),
            rounds=args.rounds,
            requests=args.requests,
            concurrency=args.concurrency,
            drain_limit_s=args.drain_limit,
        )

    rates = {name: [f.rate for f in closed[name]] for name in names}
    print("\n=== results ===")
    print(f"the service's {worker}")
    if note := settings_note(applied):
        print(note)
    print(f"closed loop, {args.rounds} rounds taking turns (median; every round):")
    for name in names:
        best = sorted(closed[name], key=lambda f: f.rate)[len(closed[name]) // 2]
        print(
            f"  {name:10} {median(rates[name]):8.0f} notifications/s   "
            f"p50 {best.pct(50):5.2f} ms  p99 {best.pct(99):5.2f} ms  "
            f"errors {sum(f.errors for f in closed[name])}   "
            f"({', '.join(f'{r:.0f}' for r in rates[name])})"
        )
    print(f"open loop at {args.rate:.0f} notifications/s:")
    for name in names:
        o = opened[name]
        print(
            f"  {name:10} achieved {o.rate:6.0f}/s   p50 {o.pct(50):5.2f} ms  "
            f"p99 {o.pct(99):5.2f} ms  errors {o.errors}"
        )
    print(
        "CPU per notification in the closed loop, median (2 cores shared by all three):"
        if os.cpu_count() == 2
        else "CPU per notification in the closed loop, median:"
    )
    for name in names:
        sh = shares[name]
        print(
            f"  {name:10} server {median([x.server_us for x in sh]):5.0f} us   "
            f"postgres {median([x.postgres_us for x in sh]):5.0f} us   "
            f"load generator {median([x.client_us for x in sh]):5.0f} us   "
            f"cores idle meanwhile {median([x.idle for x in sh]):.0%}"
        )
    print(
        f"disk flush where PostgreSQL keeps its WAL (a 16 kB write and fdatasync, before the "
        f"rounds): p50 {flush[0]:.2f} ms, p99 {flush[1]:.2f} ms; each webhook's answer waits "
        f"for one, the ceiling's for none"
    )
    ratio = median(rates["receiver"]) / median(rates["ceiling"])
    rounds = [r / c for r, c in zip(rates["receiver"], rates["ceiling"], strict=True)]
    # Three decimals and a verdict: 0.498 printed as "0.50x" beside "target >= 0.5x" read as met.
    print(
        f"\nreceiver/ceiling throughput: {ratio:.3f}x (target >= 0.5x: "
        f"{'met' if ratio >= 0.5 else 'not met'}; rounds "
        f"{', '.join(f'{x:.2f}' for x in rounds)})"
    )
    print(
        f"receiver p99 at {args.rate:.0f}/s: {opened['receiver'].pct(99):.1f} ms (target < 50 ms)"
    )
    print(matched_summary(turns, args.drain_limit))
    print(
        f"receiver after {mem.sent * 10} more alerts ({mem.errors} errors): peak RSS "
        f"{hwm:.0f} MB, current {rss:.0f} MB (target < 150 MB); PSS {pss:.0f} MB (pages "
        "shared between its processes counted once)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The intake round's options; ``--concurrency``, ``--drain-limit`` and
    ``--postgres-setting`` serve both rounds."""
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drain-limit", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--alerts", type=int, default=100_000)
    add_postgres_setting_argument(parser)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
