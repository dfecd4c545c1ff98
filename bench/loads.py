"""The bench's loads on a webhook receiver: notifications, a closed loop at fixed concurrency,
an open loop at a fixed rate, and a closed loop with the CPU it cost (bench/intake.py's rounds).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from bench.common import (
    alert,
    client_session,
    cpu_seconds,
    machine_ticks,
    percentile,
    tree_cpu_seconds,
    webhook,
)


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
    """A loop's figures: notifications sent, the seconds they took, each one's latency, the
    failed ones, and (``closed_loop(cpu=)``) the CPU seconds each measured process spent in
    those same seconds."""

    sent: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    cpu_spent: tuple[float, ...] = ()

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
    url: str,
    total: int,
    concurrency: int,
    start: int,
    alerts: int = 1,
    *,
    matched: bool = False,
    cpu: Callable[[], tuple[float, ...]] | None = None,
) -> Figures:
    """``total`` notifications posted by ``concurrency`` clients, each posting its next once
    answered. ``cpu()``: CPU seconds of the processes to measure, read as the timed posting
    starts and ends (``Figures.cpu_spent``): the bodies are built, and the connections opened
    and closed, outside it (building a body costs the load generator 16 to 18 µs, which the
    figures up to stop 48 counted as its CPU per notification)."""
    out = Figures(total, 0.0, [], 0)
    bodies = [notification(start + i, alerts, matched=matched) for i in range(total)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async with client_session(concurrency) as session:

        async def user() -> None:
            while not queue.empty():
                await _post(session, url, queue.get_nowait(), out)

        before = cpu() if cpu is not None else ()
        t0 = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        out.seconds = time.perf_counter() - t0
        if cpu is not None:
            out.cpu_spent = tuple(b - a for a, b in zip(before, cpu(), strict=True))
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
    """CPU µs per notification of the server, PostgreSQL and this load generator, and the
    share of the machine's cores left idle meanwhile (0 to 1, /proc/stat)."""

    server_us: float
    postgres_us: float
    client_us: float
    idle: float = 0.0


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

    def now() -> tuple[float, ...]:
        ticks = machine_ticks()
        return (
            tree_cpu_seconds(pids[0]),
            tree_cpu_seconds(pids[1]),
            cpu_seconds(os.getpid()),
            float(ticks[3]),  # idle
            float(sum(ticks)),
        )

    figures = await closed_loop(url, total, concurrency, start, matched=matched, cpu=now)
    server, postgres, client, idle, ticks = figures.cpu_spent
    return figures, CpuShare(
        1e6 * server / total,
        1e6 * postgres / total,
        1e6 * client / total,
        idle / ticks if ticks else 0.0,
    )
