"""The store's upkeep while ``serve`` runs: the planner's statistics kept in step with a storm
(``keep_statistics``, every few seconds) and retention (``keep_pruning``, every hour).

Both are duties repeated until cancelled (``repeat``): a failure, the store being out of reach
above all, is a warning at most once per ``WARN_EVERY_S`` (with the count held back since the
last one) and never ends the duty; the next round tries again. Each round's result is logged at
info level when it did something.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from receiver.log_limits import Throttle
from receiver.store.errors import StoreUnavailable, describe
from receiver.store.statistics import CHECK_EVERY_S

__all__ = ["PRUNE_EVERY_S", "WARN_EVERY_S", "keep_pruning", "keep_statistics", "repeat"]

# How often retention runs (seconds). Events are kept for days: an hour late costs nothing.
PRUNE_EVERY_S = 3600.0

# At most one warning per this many seconds per duty while it fails (the store down for an
# hour is twelve lines, not 1,800).
WARN_EVERY_S = 300.0


class _Analyses(Protocol):
    async def refresh_statistics(self) -> Sequence[str]: ...


class _Prunes(Protocol):
    async def prune(self, older_than_s: float) -> Mapping[str, int]: ...


async def repeat(
    duty: Callable[[], Awaitable[None]],
    *,
    every_s: float,
    log: Any,
    failed: str,
    warn_every_s: float = WARN_EVERY_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Until cancelled: ``await duty()``, then ``await sleep(every_s)`` (``sleep`` is passed
    in so that a test decides when the loop ends). An exception from
    ``duty`` (not a cancellation) is logged as the warning ``failed`` with its description,
    at most once per ``warn_every_s`` seconds, and the loop goes on."""
    warnings = Throttle(warn_every_s)
    while True:
        try:
            await duty()
        except Exception as exc:  # the store may be down for a while; try again next time
            if (held_back := warnings.ready()) is not None:
                log.warning(
                    failed,
                    error=str(exc) if isinstance(exc, StoreUnavailable) else describe(exc),
                    not_logged_since_last=held_back,
                )
        await sleep(every_s)


async def keep_statistics(
    store: _Analyses,
    log: Any,
    *,
    every_s: float = CHECK_EVERY_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Until cancelled: every ``every_s`` seconds, ``refresh_statistics``
    (receiver/store/statistics.py says why); the tables analysed are logged."""

    async def analyse() -> None:
        analysed = await store.refresh_statistics()
        if analysed:
            log.info("analysed tables whose statistics were out of date", tables=analysed)

    await repeat(
        analyse,
        every_s=every_s,
        log=log,
        failed="could not bring the planner's statistics up to date",
        sleep=sleep,
    )


async def keep_pruning(
    store: _Prunes,
    retention_s: float,
    log: Any,
    *,
    every_s: float = PRUNE_EVERY_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Until cancelled: every ``every_s`` seconds, retention (``Store.prune``): processed
    events and finished jobs older than ``retention_s`` seconds go; runs and audit rows stay.
    What was pruned is logged."""

    async def prune() -> None:
        pruned = await store.prune(retention_s)
        if any(pruned.values()):
            log.info("pruned old alert events and jobs", **pruned)

    await repeat(
        prune, every_s=every_s, log=log, failed="pruning old events and jobs failed", sleep=sleep
    )
