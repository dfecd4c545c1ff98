"""`make bench`: webhook intake throughput, latency and memory, next to a do-nothing ceiling.

Starts PostgreSQL and Redis (the embedded wheels, in a temporary directory), runs the real
``remediator serve`` in its own process against them, and drives it over loopback with an
aiohttp client: (1) closed-loop throughput at fixed concurrency, in rounds where the receiver
and the ceiling take turns (medians compared), (2) an open-loop fixed rate for p99, (3) 100,000
alerts for the server's peak RSS. The same load against a handler that stores nothing gives
the ceiling on this machine. This is a benchmark, not a test: it prints
figures and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.common import (
    TOKEN,
    alert,
    client_session,
    cpu_seconds,
    flush_latency_ms,
    machine,
    median,
    percentile,
    postmaster_pid,
    server,
    tree_cpu_seconds,
    tree_rss_mb,
    wait_ready,
    webhook,
    workdir,
)
from bench.settings import (
    add_postgres_setting_argument,
    round_settings,
    settings_note,
    worker_shape,
)
from receiver.embedded import EmbeddedServices
from receiver.embedded.process import free_port

POSTGRES_DATA = Path("postgres", "data")


def notification(seq: int, alerts: int = 1, *, matched: bool = False) -> bytes:
    """Alerts no rule matches (most of a catch-all feed), or with ``matched`` alerts that the
    shipped restart-on-high-memory rule matches, each on its own Deployment."""
    items = []
    for i in range(alerts):
        labels = {
            "alertname": "HighMemoryUsage" if matched else "BenchAlert",
            "namespace": "bench",
            "instance": f"pod-{seq}-{i}",
            "severity": "warning",
        }
        if matched:
            labels["deployment"] = f"web-{seq}-{i}"
        items.append(alert(labels, f"bench alert {seq}/{i}"))
    return webhook(items, str(seq))


@dataclass
class Figures:
    sent: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    out: Figures,
    since: float | None = None,
) -> None:
    """POST ``body``; its latency is counted from ``since`` (perf_counter) when given: in the
    open loop, the time it was due, so a load generator that falls behind does not hide the
    queueing from the figures (coordinated omission)."""
    t0 = time.perf_counter() if since is None else since
    async with session.post(url, data=body) as resp:
        await resp.read()
        if resp.status != 200:
            out.errors += 1
    out.latencies_ms.append((time.perf_counter() - t0) * 1000)


async def closed_loop(
    url: str, total: int, concurrency: int, start: int, alerts: int = 1, *, matched: bool = False
) -> Figures:
    out = Figures(total, 0.0, [], 0)
    bodies = [notification(start + i, alerts, matched=matched) for i in range(total)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async with client_session(concurrency) as session:

        async def user() -> None:
            while not queue.empty():
                await _post(session, url, queue.get_nowait(), out)

        t0 = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        out.seconds = time.perf_counter() - t0
    return out


async def open_loop(url: str, rate: float, seconds: float, start: int) -> Figures:
    total = int(rate * seconds)
    out = Figures(total, 0.0, [], 0)
    bodies = [notification(start + i) for i in range(total)]
    async with client_session(512) as session:
        tasks = []
        t0 = time.perf_counter()
        for i, body in enumerate(bodies):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(session, url, body, out, since=due)))
        await asyncio.gather(*tasks)
        out.seconds = time.perf_counter() - t0
    return out


@dataclass
class CpuShare:
    """CPU seconds per notification of the server, PostgreSQL and this load generator."""

    server_us: float
    postgres_us: float
    client_us: float


async def measured(
    url: str,
    total: int,
    concurrency: int,
    start: int,
    pids: tuple[int, int],
    *,
    matched: bool = False,
) -> tuple[Figures, CpuShare]:
    """A closed loop, with the CPU it cost: ``pids`` are the server's (with its worker
    processes) and the postmaster's (that PostgreSQL's processes only, the backends that exited
    included)."""

    def now() -> tuple[float, float, float]:
        return (tree_cpu_seconds(pids[0]), tree_cpu_seconds(pids[1]), cpu_seconds(os.getpid()))

    before = now()
    figures = await closed_loop(url, total, concurrency, start, matched=matched)
    after = now()
    per = [1e6 * (a - b) / total for a, b in zip(after, before, strict=True)]
    return figures, CpuShare(*per)


async def queue_depth(metrics_url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("remediator_queue_depth "):
                return int(float(line.split()[1]))
    raise RuntimeError("remediator_queue_depth missing from /metrics")


async def drain_rate(metrics_url: str, limit_s: float) -> tuple[float, int]:
    """Events the worker settles per second from now until the queue is empty (or ``limit_s``),
    and how many are left."""
    t0 = time.perf_counter()
    start = depth = await queue_depth(metrics_url)
    while depth > 0 and time.perf_counter() - t0 < limit_s:
        await asyncio.sleep(1.0)
        depth = await queue_depth(metrics_url)
        print(f"[receiver] worker: {depth} events still queued …", flush=True)
    return (start - depth) / (time.perf_counter() - t0), depth


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
        # Last, because its backlog keeps the worker busy long after the loop: every alert
        # matched by a rule, so the worker plans, guards and records a dry-run for each.
        print(
            f"[receiver] closed loop, every alert matched by a rule: {args.requests} "
            f"notifications …",
            flush=True,
        )
        matched, matched_share = await measured(
            urls["receiver"],
            args.requests,
            args.concurrency,
            40_000_000,
            (procs["receiver"].pid, postmaster),
            matched=True,
        )
        metrics_url = urls["receiver"].replace("/api/v1/alerts", "/metrics")
        drained, left = await drain_rate(metrics_url, args.drain_limit)

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
            f"load generator {median([x.client_us for x in sh]):5.0f} us"
        )
    print(
        f"disk flush where PostgreSQL keeps its WAL (a 16 kB write and fdatasync, before the "
        f"rounds): p50 {flush[0]:.2f} ms, p99 {flush[1]:.2f} ms; each webhook's answer waits "
        f"for one, the ceiling's for none"
    )
    ratio = median(rates["receiver"]) / median(rates["ceiling"])
    matched_ratio = matched.rate / median(rates["ceiling"])
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
    print(
        f"receiver, every alert matched by a rule (the worker busy in dry-run): "
        f"{matched.rate:.0f} notifications/s ({matched_ratio:.3f}x; target >= 0.45x: "
        f"{'met' if matched_ratio >= 0.45 else 'not met'}), "
        f"p99 {matched.pct(99):.1f} ms, errors {matched.errors}; server "
        f"{matched_share.server_us:.0f} us + postgres {matched_share.postgres_us:.0f} us "
        f"per notification; the worker then settled {drained:.0f} events/s"
        + (f" ({left} still queued after {args.drain_limit:.0f} s)" if left else "")
    )
    print(
        f"receiver after {mem.sent * 10} more alerts ({mem.errors} errors): peak RSS "
        f"{hwm:.0f} MB, current {rss:.0f} MB (target < 150 MB)"
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
