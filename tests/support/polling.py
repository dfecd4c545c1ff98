"""Waiting for a condition instead of sleeping: poll it until it holds or a deadline passes.

The one home of the tests' polling loops: ``eventually`` (async probes) and
``eventually_blocking`` (the same for synchronous code, such as starting a server). A probe
that raises ends the wait with its error (a server process that exited, say): only a value
``accept`` does not take means "not yet". The interval sleep below is the only sleep a test
needs for waiting; a sleep anywhere else is real time passing on purpose, and says so.

The deadline only stops a hang: a condition that holds does so as soon as it holds, and one
that never will fails the test at the deadline. So it is generous (``PATIENCE_S``, minutes):
the suite runs on a busy 2-core machine, where a worker, a server or PostgreSQL can be seconds
late, and a poll of 10 or 20 s that ran out failed tests whose behaviour was right. How soon
something happens is measured in benchmarks (``bench/``), never by a poll's deadline; a test
whose subject is a product deadline bounds that deadline itself (a frozen store's 503, say).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["PATIENCE_S", "current", "eventually", "eventually_blocking", "eventually_not_none"]

T = TypeVar("T")

# How long a poll waits before it calls its condition never met: a stop for a hang only.
PATIENCE_S = 120.0


class _Deadline:
    def __init__(self, timeout_s: float, what: str) -> None:
        self._end = time.monotonic() + timeout_s
        self._timeout_s = timeout_s
        self._what = what

    def check(self, last: object) -> None:
        if time.monotonic() >= self._end:
            raise AssertionError(
                f"{self._what} not met within {self._timeout_s}s; last value: {last!r}"
            )


def current(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A synchronous read as a probe for ``eventually``: ``eventually(current(lambda: x))``."""

    async def probe() -> T:
        return read()

    return probe


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool] = bool,
    *,
    timeout_s: float = PATIENCE_S,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """The first value of ``probe()`` that ``accept`` takes; AssertionError naming ``what``
    with the last value seen when none does within ``timeout_s`` seconds."""
    deadline = _Deadline(timeout_s, what)
    while True:
        value = await probe()
        if accept(value):
            return value
        deadline.check(value)
        await asyncio.sleep(interval_s)


async def eventually_not_none(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float = PATIENCE_S,
    interval_s: float = 0.05,
    what: str = "a value",
) -> T:
    """The first value of ``probe()`` that is not None (a lookup that finds nothing yet)."""
    found = await eventually(
        probe,
        lambda value: value is not None,
        timeout_s=timeout_s,
        interval_s=interval_s,
        what=what,
    )
    assert found is not None
    return found


def eventually_blocking(
    probe: Callable[[], T],
    accept: Callable[[T], bool] = bool,
    *,
    timeout_s: float = PATIENCE_S,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """``eventually`` for synchronous code (it blocks the thread between probes)."""
    deadline = _Deadline(timeout_s, what)
    while True:
        value = probe()
        if accept(value):
            return value
        deadline.check(value)
        time.sleep(interval_s)
