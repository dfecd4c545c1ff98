"""One call on its way at a time, its outcome shared by everyone who asked meanwhile.

``/readyz`` and ``/metrics`` are open without credentials, for probes and scrapers, and each
request ran every readiness check (a write to the guards' Redis, a query on the store, a call to
the Kubernetes API) and every scrape-time read of its own. A tester's 3,000 ``/readyz``
requests, 400 at once, used up the guards' Redis connections (redis-py's pool stops at 101):
up to 473 of them answered 503 with "Too many connections", and the guards' admissions, which
share those connections, would have failed closed meanwhile. With ``SingleFlight`` a flood of
probes makes one check on its way per component, however many ask.

Not a library's: aiocache and async-lru cache results for a time, and a readiness answer must
come from a check made after the question was asked, or while it was being asked, never from
an older one. Pure asyncio, no I/O of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight"]

_T = TypeVar("_T")


class SingleFlight(Generic[_T]):
    """``await shared()``: the outcome of ``make()``, a call started by this one or by another
    caller whose call is still on its way. Its result, or the exception it raised, reaches each
    caller that waited for it (the same exception object: a readiness check's, which says what
    is wrong with one component, the same for every caller).

    A caller that gives up (a timeout, a client gone) stops waiting; the call goes on for the
    others (``asyncio.shield``), for at most ``timeout_s`` seconds when given (then it is
    cancelled, and its callers get TimeoutError), and the next caller after it ends starts a
    fresh one. Give a ``timeout_s`` to a call that may not bound itself: before the sharing,
    each caller's own timeout cancelled its own call, and a shared call that never ends (a
    Kubernetes API connection gone silent: its client waits without limit) would be joined by
    every later caller, for good. Used from one event loop."""

    def __init__(
        self, make: Callable[[], Awaitable[_T]], *, timeout_s: float | None = None
    ) -> None:
        self._make = make
        self._timeout_s = timeout_s
        self._on_its_way: asyncio.Future[_T] | None = None
        self.calls = 0  # calls made (tests)

    async def __call__(self) -> _T:
        if self._on_its_way is None or self._on_its_way.done():
            self.calls += 1
            self._on_its_way = asyncio.ensure_future(self._bounded())
            # Retrieved here, so that an exception nobody waited for (every caller gave up)
            # is not logged as "never retrieved" when the task is collected.
            self._on_its_way.add_done_callback(_retrieve)
        return await asyncio.shield(self._on_its_way)

    async def _bounded(self) -> _T:
        if self._timeout_s is None:
            return await self._make()
        return await asyncio.wait_for(self._make(), self._timeout_s)


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()
