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
on a quiet one it moved within the noise (57 and 61 ms against 54 and 61 ms). In a flood of
webhooks intake holds the worker back in turn (``IntakeFirst``, below): a soft hold, which the
express event and the work apart from the flood pass.

The hold is bounded (``hold_s``): an express event that waits for a slow action, a long HTTP
call or a verification does not stall the storm behind it for longer than that, and at most
one express event is on its way at a time (the worker's rule), so a stream of unrelated alerts
gives the storm its turn between them. Not a library's: what is held back is our own pipeline's
next call, and what goes first is decided by the worker's claim.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Hashable

__all__ = ["BUSY_AT", "GAP_S", "HOLD_S", "IntakeFirst", "Priority"]

# The longest the other events hold back for one express event (seconds): about ten times
# what an express event takes to its action on an idle service.
HOLD_S = 0.2


# Notifications in intake at once from which it holds the worker back (IntakeFirst): Alertmanager
# sends one per group as each group's timer fires, so this many at once within the milliseconds
# a commit takes is a flood (a storm's first flush, a replay), not a busy day.
BUSY_AT = 8
# After an intake hold ends, the worker's events go on for at least this long before intake
# holds them again: through a flood that never ends, the worker still has 1/11 of the time to
# itself (and shares the rest whenever intake is below BUSY_AT).
GAP_S = 0.02

# The key of ``Priority.apart``: never held.
_APART = ("apart",)

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
        self._soft: set[Hashable] = set()  # holds that every task working for a hold passes
        self._ended: dict[Hashable, Callable[[], None]] = {}  # told when their hold ends
        self._released = asyncio.Event()  # set, and replaced, at each release: waiters look again

    @property
    def hold_s(self) -> float:
        return self._hold_s

    @property
    def holding(self) -> bool:
        return bool(self._holds)

    def hold(
        self, key: Hashable, *, soft: bool = False, ended: Callable[[], None] | None = None
    ) -> bool:
        """Hold the others back for ``key`` until ``release(key)``, or ``hold_s`` seconds;
        False, and nothing changed, when that hold stands already. ``soft``: a task that works
        for a hold (``first``) passes this one, even once its own has ended (intake's: the
        express event goes on through a flood). ``ended``: called once when this hold ends,
        at its timer or released, after the others may go on."""
        if key in self._holds:
            return False
        loop = asyncio.get_running_loop()
        self._holds[key] = loop.call_later(self._hold_s, self.release, key)
        if soft:
            self._soft.add(key)
        if ended is not None:
            self._ended[key] = ended
        self._open.clear()
        return True

    def first(self, key: Hashable) -> None:
        """The current task (and the tasks it starts from now on) works for the hold ``key``:
        its ``turn()`` does not wait while that hold stands, nor for a soft hold. A ``key``
        never held marks work that only soft holds do not stop (``apart``)."""
        _WORKING_FOR.set((self, key))

    def apart(self) -> None:
        """The current task's work is no part of a flood (an alert name with nothing else in
        progress, a job): intake's hold (soft) lets it by; an express event's still holds it."""
        self.first(_APART)

    def release(self, key: Hashable) -> None:
        """End the hold ``key``, if it stands."""
        handle = self._holds.pop(key, None)
        self._soft.discard(key)
        ended = self._ended.pop(key, None)
        if handle is not None:
            handle.cancel()
            released, self._released = self._released, asyncio.Event()
            released.set()
        if not self._holds:
            self._open.set()
        # Last: the hold is over whatever the callback does (from the timer, what it raises
        # goes to the loop's exception handler).
        if ended is not None:
            ended()

    async def turn(self) -> None:
        """Return at once, unless a hold stands that the current task does not work for (and,
        for a task that works for one, one that is not soft): then when no hold stands."""
        if self._open.is_set():
            return
        working = _WORKING_FOR.get()
        if working is None or working[0] is not self:
            await self._open.wait()
            return
        # Working for a hold: looked at again as each hold ends, one of them may be the last
        # that is not soft.
        while self._holds and not (working[1] in self._holds or self._holds.keys() <= self._soft):
            await self._released.wait()


class IntakeFirst:
    """Webhooks first: while intake has ``busy_at`` or more notifications in progress, the
    worker's events hold back at their next call (``priority.hold`` of ``KEY``, soft, for at most
    the priority's ``hold_s``; not again within ``gap_s`` after it ends).

    In a flood the event loop and the two cores serve the webhooks first, and the worker takes
    up the flood's events afterwards: every one is stored before its webhook is answered, so
    nothing waits that is not already safe. What is no part of the flood goes on (``apart``:
    a job, an alert name with nothing else in progress in the worker; an express event). Issue
    12's intake round, in turn with the code before it (docs/performance-history.md, stop 44):
    alerts a rule matches 0.41x to 0.45x the do-nothing ceiling against 0.26x to 0.29x; the
    storm round's drain and unrelated alert no worse. A worker process of its own
    (``worker.processes``) is not held: it has no loop in common with intake.

    ``entered()`` as a notification comes into intake and ``left()`` when it is answered, from
    the loop of ``priority``; ``clock``: seconds, the loop's (``loop.time``) by default.
    ``on_hold``: called as each hold is taken; ``on_hold_ended``: called as it ends, with the
    seconds it lasted by ``clock`` (``hold_s`` at its timer, more when the loop was late to
    run it, less when released). Both for the metrics (``receiver.service``), and neither
    may raise: they run inside intake's ``accept`` and the priority's timer."""

    KEY = "intake"

    def __init__(
        self,
        priority: Priority,
        *,
        busy_at: int = BUSY_AT,
        gap_s: float = GAP_S,
        clock: Callable[[], float] | None = None,
        on_hold: Callable[[], None] | None = None,
        on_hold_ended: Callable[[float], None] | None = None,
    ) -> None:
        self._priority = priority
        self._busy_at = max(1, busy_at)
        self._gap_s = gap_s
        self._clock = clock
        self._on_hold = on_hold
        self._on_hold_ended = on_hold_ended
        self._in_progress = 0
        self._next_hold = float("-inf")  # no hold before this time (the gap)
        self._held_at = 0.0  # when the last hold was taken (clock)
        self.holds = 0  # holds taken (for tests and the bench)

    @property
    def in_progress(self) -> int:
        return self._in_progress

    def entered(self) -> None:
        """One more notification in intake: hold the worker back if that makes a flood."""
        self._in_progress += 1
        if self._in_progress < self._busy_at:
            return
        now = self._now()
        if now < self._next_hold:
            return
        # The hold ends by itself after hold_s: a flood that goes on takes it again after the
        # gap, and one that stops leaves the worker waiting at most hold_s. One that stands
        # still (its timer due, not yet run) is not taken again nor counted twice.
        if not self._priority.hold(self.KEY, soft=True, ended=self._ended):
            return
        self._held_at = now
        self._next_hold = now + self._priority.hold_s + self._gap_s
        self.holds += 1
        if self._on_hold is not None:
            self._on_hold()

    def left(self) -> None:
        """A notification answered (stored or not)."""
        self._in_progress -= 1

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _ended(self) -> None:
        # The hold taken at _held_at ended (Priority.release): only one stands at a time.
        # The gap counts from the end: a busy loop runs the hold's timer late, and a gap
        # counted from the start (hold_s + gap_s) was then used up before the hold ended.
        now = self._now()
        self._next_hold = max(self._next_hold, now + self._gap_s)
        if self._on_hold_ended is not None:
            self._on_hold_ended(max(0.0, now - self._held_at))
