"""`make bench`, intake round: alerts a rule matches, in rounds taking turns with the ceiling.

Each round posts ``requests`` notifications to the ceiling, then as many matched notifications
to the receiver (its worker plans, guards and records a dry-run for each while intake goes on),
then waits for the receiver's queue to empty, so the next ceiling round does not share the
machine with a draining worker. The ratio is the median of each round's receiver/ceiling:
taking turns keeps a drift of the machine (other tenants, CPU frequency) out of it, as the
unmatched rounds do. Up to stop 42 a single matched loop was divided by the unmatched rounds'
median ceiling, and the ratio moved from 0.31x to 0.52x between runs on a quiet machine.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from bench.common import median
from bench.loads import CpuShare, Figures, closed_loop, measured

# Where the matched rounds' alert numbers start (fingerprints unused by the other rounds).
MATCHED_START = 40_000_000
# How often the drain reads /metrics: each scrape costs the service a queue-depth query and its
# worker processes' expositions, so a tenth of a second took CPU from the drain it timed.
QUEUE_POLL_S = 1.0


@dataclass(frozen=True, slots=True)
class MatchedRound:
    """One turn: the ceiling's rate (notifications/s), the receiver's matched loop and its CPU,
    then the worker's drain: events settled per second after the loop (None when nothing was
    queued then: the worker kept up), and how many were left at the drain's limit (0 when it
    emptied)."""

    ceiling_rate: float
    matched: Figures
    share: CpuShare
    drained_per_s: float | None
    left: int

    @property
    def ratio(self) -> float:
        return self.matched.rate / self.ceiling_rate if self.ceiling_rate else 0.0


async def queue_depth(metrics_url: str) -> int:
    """``remediator_queue_depth`` from the receiver's /metrics. Raises RuntimeError without it."""
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("remediator_queue_depth "):
                return int(float(line.split()[1]))
    raise RuntimeError("remediator_queue_depth missing from /metrics")


async def drain_rate(metrics_url: str, limit_s: float) -> tuple[float | None, int]:
    """Events the worker settles per second from now until the queue is empty (or ``limit_s``;
    None when none is queued now), and how many are left. A progress line at each reading."""
    t0 = time.perf_counter()
    start = depth = await queue_depth(metrics_url)
    while depth > 0 and time.perf_counter() - t0 < limit_s:
        await asyncio.sleep(QUEUE_POLL_S)
        depth = await queue_depth(metrics_url)
        print(f"[receiver] worker: {depth} events still queued …", flush=True)
    if start == 0:
        return None, 0
    return (start - depth) / (time.perf_counter() - t0), depth


async def matched_rounds(
    urls: dict[str, str],
    pids: tuple[int, int],
    *,
    rounds: int,
    requests: int,
    concurrency: int,
    drain_limit_s: float,
) -> list[MatchedRound]:
    """``rounds`` turns of the ceiling then the receiver (``urls`` by name: the webhook URLs of
    "ceiling" and "receiver"); ``pids``: the receiver's and the postmaster's, for the CPU."""
    metrics_url = urls["receiver"].replace("/api/v1/alerts", "/metrics")
    out: list[MatchedRound] = []
    for round_ in range(rounds):
        print(f"[ceiling] closed loop for the matched round {round_ + 1}/{rounds} …", flush=True)
        ceiling = await closed_loop(urls["ceiling"], requests, concurrency, start=0)
        print(
            f"[receiver] closed loop {round_ + 1}/{rounds}, every alert matched by a rule: "
            f"{requests} notifications …",
            flush=True,
        )
        matched, share = await measured(
            urls["receiver"],
            requests,
            concurrency,
            MATCHED_START + round_ * requests,
            pids,
            matched=True,
        )
        drained, left = await drain_rate(metrics_url, drain_limit_s)
        out.append(MatchedRound(ceiling.rate, matched, share, drained, left))
        if left:  # the next turn would share the machine with this backlog
            break
    return out


def matched_summary(turns: list[MatchedRound], drain_limit_s: float) -> str:
    """The results' line: the median ratio with every round's, the median round's p99, the
    errors, the CPU per notification and the drain."""
    ratio = median([t.ratio for t in turns])
    middle = sorted(turns, key=lambda t: t.ratio)[len(turns) // 2]
    left = turns[-1].left
    return (
        f"receiver, every alert matched by a rule (the worker busy in dry-run), "
        f"{len(turns)} rounds taking turns with the ceiling: {ratio:.3f}x (target >= 0.45x: "
        f"{'met' if ratio >= 0.45 else 'not met'}; rounds "
        f"{', '.join(f'{t.ratio:.2f}' for t in turns)}; "
        f"{', '.join(f'{t.matched.rate:.0f}' for t in turns)} notifications/s), "
        f"p99 {middle.matched.pct(99):.1f} ms, errors {sum(t.matched.errors for t in turns)}; "
        f"server {median([t.share.server_us for t in turns]):.0f} us + postgres "
        f"{median([t.share.postgres_us for t in turns]):.0f} us per notification, the cores "
        f"idle {median([t.share.idle for t in turns]):.0%} meanwhile; "
        + _drained([t.drained_per_s for t in turns])
        + (f" ({left} still queued after {drain_limit_s:.0f} s)" if left else "")
    )


def _drained(rates: list[float | None]) -> str:
    kept = [r for r in rates if r is not None]
    if not kept:
        return "the worker kept up: nothing was queued after any loop"
    said = f"the worker then settled {median(kept):.0f} events/s"
    if len(kept) < len(rates):
        said += f" (nothing was queued after {len(rates) - len(kept)} of the loops)"
    return said
