"""Express events go first: while one is on its way, the other events of this worker wait at
their next call to the store or the guards.

Issue 12 asks that an alert of another rule or target, arriving during a storm, get its
action as fast as when idle. The express claim (``receiver.worker.express``) takes such an
event at once, one beyond the concurrency; but then its every call (history read, admission,
the run's write) joins batches that a storm's events fill, and between them it waits for a
loop and two cores those events keep busy: 55 to 73 ms at the median on the AMD EPYC kind
(stop 26's probe found no one leg to blame, each waited for the CPU). So while an express event
is claimed and processed, the storm's events hold back at their next call (``turn``): the ones
already on their way finish, no new ones start, and the express event has the loop, the store
and the guards to itself. What it does not hold back is intake, which shares the loop: while
the storm is still being posted, the unrelated alert waits for the webhooks' handling as much
as for the worker. Measured in the bench's storm round (100,000 stored, taken in turn with the
code before it; docs/performance-history.md, stop 27): on a machine kept busy by other work
(load average 6 to 10) the unrelated alert's p50 fell from 438 and 284 ms to 166 and 176 ms;
on a quiet one it moved within the noise (57 and 61 ms against 54 and 61 ms).

The hold is bounded (``hold_s``): an express event that waits for a slow action, a long HTTP
call or a verification does not stall the storm behind it for longer than that, and at most
one express event is on its way at a time (the worker's rule), so a stream of unrelated alerts
gives the storm its turn between them. Not a library's: what is held back is our own pipeline's
next call, and what goes first is decided by the worker's claim.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Hashable

__all__ = ["HOLD_S", "Priority"]

# The longest the other events hold back for one express event (seconds): about ten times
# what an express event takes to its action on an idle service.
HOLD_S = 0.2


# Which hold the current task works for (and of which Priority): set in the express event's
# task, and inherited by the tasks it starts (the worker runs an item's work in a task of its
# own), as a context variable is.
_WORKING_FOR: contextvars.ContextVar[tuple[Priority, Hashable] | None] = contextvars.ContextVar(
    "working_for", default=None
)


class Priority:
    """``hold(key)`` while an express event is claimed and processed, ``release(key)`` when it
    is done; ``first(key)`` in the task that processes it, so that it and the tasks it starts
    go on. Every other task's ``await turn()`` waits while any hold stands, each hold for at
    most ``hold_s`` seconds.

    Used from one event loop; no I/O. ``holding`` says whether a hold stands (for tests)."""

    def __init__(self, *, hold_s: float = HOLD_S) -> None:
        self._hold_s = hold_s
        self._open = asyncio.Event()
        self._open.set()
        self._holds: dict[Hashable, asyncio.TimerHandle] = {}

    @property
    def holding(self) -> bool:
        return bool(self._holds)

    def hold(self, key: Hashable) -> None:
        """Hold the others back for ``key`` until ``release(key)``, or ``hold_s`` seconds."""
        if key in self._holds:
            return
        loop = asyncio.get_running_loop()
        self._holds[key] = loop.call_later(self._hold_s, self.release, key)
        self._open.clear()

    def first(self, key: Hashable) -> None:
        """The current task (and the tasks it starts from now on) works for the hold ``key``:
        its ``turn()`` does not wait while that hold stands."""
        _WORKING_FOR.set((self, key))

    def release(self, key: Hashable) -> None:
        """End the hold ``key``, if it stands."""
        handle = self._holds.pop(key, None)
        if handle is not None:
            handle.cancel()
        if not self._holds:
            self._open.set()

    async def turn(self) -> None:
        """Return at once, unless a hold stands that the current task does not work for:
        then when no hold stands."""
        if self._open.is_set():
            return
        working = _WORKING_FOR.get()
        if working is not None and working[0] is self and working[1] in self._holds:
            return
        await self._open.wait()
