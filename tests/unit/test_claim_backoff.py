"""The claim loop's wait after a claim the store could not answer (receiver/worker/
claim_backoff.py): a wake-up ends it, never before ``WAKE_AFTER_S``; the stop ends it at once;
without a wake-up event, only the stop does."""

from __future__ import annotations

import asyncio
import time

from receiver.worker.claim_backoff import WAKE_AFTER_S, back_off


async def _timed(delay_s: float, *, stop: bool = False, woken: bool | None = True) -> float:
    stopped, wake = asyncio.Event(), asyncio.Event()
    if stop:
        stopped.set()
    if woken:
        wake.set()
    started = time.monotonic()
    await back_off(delay_s, stopped=stopped, wake=None if woken is None else wake)
    return time.monotonic() - started


async def test_a_wake_up_ends_the_backoff_once_its_shortest_wait_passed() -> None:
    waited = await _timed(60.0)
    assert WAKE_AFTER_S <= waited < WAKE_AFTER_S + 5


async def test_the_stop_ends_it_at_once() -> None:
    assert await _timed(60.0, stop=True) < WAKE_AFTER_S


async def test_without_a_wake_up_it_lasts_its_delay() -> None:
    assert await _timed(WAKE_AFTER_S + 0.5, woken=False) >= WAKE_AFTER_S + 0.5
    assert await _timed(WAKE_AFTER_S + 0.5, woken=None) >= WAKE_AFTER_S + 0.5
