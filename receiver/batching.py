"""Group calls that arrive together into one round trip, without a timer.

``Coalescer``: a call is sent at once when fewer than ``max_in_flight`` batches of its kind are
on their way; otherwise the calls that arrive meanwhile queue up, and the next batch takes them
all (up to ``max_batch``). An idle service pays one round trip per call, as before; a busy
worker (a storm: many events in progress at once, each asking the same store the same kind of
question) pays one round trip per batch. This is the write path's classic group commit
(``receiver.intake`` batches notifications the same way, with deadlines of its own), for the
worker's calls: the engine's history reads (one round trip), the guards' admissions (one Redis
pipeline) and the new runs' writes (one transaction).

Written here, not taken from a library: the DataLoader ports (aiodataloader) batch the calls of
one loop turn and then wait for the next, which under load serialises batches behind each
other with nothing in flight; and they cache answers, which a write must never be.

Each call gets its own answer or its own exception: the ``send`` function answers a batch
with one outcome per call, in order, and a call that fails fails alone. An exception that
answers several calls (a batch that failed as a whole) reaches each caller as an object of its
own: one raised in many tasks would carry into every caller's log what the first one was
handling when it raised it (``__context__``), another sender's data among it.

A caller that is cancelled (it gave up, timed out, or the worker is stopping) stops waiting
for its answer. A call still queued is then never sent: nobody would act on its answer, and a
write or an admission made after its caller has moved on (released its event, reported the
guards unavailable) is one made behind its back. The batch a call has joined is sent all the
same, since the other callers wait for theirs. With ``wait_when_sent`` a caller cancelled
while its call is on its way leaves only once that call is answered (its cancellation still
raised): a write must be done, or never to be done, when its caller moves on. A statement
alone is cancelled with its caller (asyncpg cancels it on the server and waits for that); one
of a group is not, and committed after the worker released its event it would race the
event's next holder (store/group.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer"]

_Call = TypeVar("_Call")
_Answer = TypeVar("_Answer")


@dataclass(slots=True, eq=False)
class _Waiting(Generic[_Call, _Answer]):
    call: _Call
    answer: asyncio.Future[_Answer]


class Coalescer(Generic[_Call, _Answer]):
    """``await coalescer(call)``: the answer ``send`` gave for ``call``, sent in a batch with
    the calls that arrived while the previous batch was on its way.

    ``send(calls)`` returns one outcome per call, in order: an answer, or an exception that
    that caller raises. An exception raised by ``send`` itself fails every call of the batch
    (a connection lost: none of them has an answer). ``max_batch``: the most calls one batch
    takes (>= 1). ``stopped()``: the exception the calls still queued get when the sender is
    cancelled (the service stopping). ``wait_when_sent``: a caller cancelled while its call is
    on its way waits for its answer before it raises. ``batches`` and ``calls`` count what was
    sent."""

    def __init__(
        self,
        send: Callable[[list[_Call]], Awaitable[Sequence[_Answer | BaseException]]],
        *,
        max_batch: int = 32,
        max_in_flight: int = 1,
        stopped: Callable[[], BaseException] = lambda: ConnectionError("stopped before sent"),
        wait_when_sent: bool = False,
    ) -> None:
        self._send = send
        self._max_batch = max(1, max_batch)
        self._max_in_flight = max(1, max_in_flight)
        self._stopped = stopped
        self._wait_when_sent = wait_when_sent
        self._queue: list[_Waiting[_Call, _Answer]] = []
        self._senders: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.calls = 0

    async def __call__(self, call: _Call) -> _Answer:
        loop = asyncio.get_running_loop()
        waiting: _Waiting[_Call, _Answer] = _Waiting(call, loop.create_future())
        self._queue.append(waiting)
        # A sender that found the queue empty is done() at once (it leaves the set only later,
        # by callback), and nothing awaits between that look and its end: a sender that is
        # not done will still see what was queued here.
        if sum(not s.done() for s in self._senders) < self._max_in_flight:
            # Started on the loop's next turn: the calls made in this turn join its first batch
            # (a claim's events reach the same stage in the same turn).
            sender = loop.create_task(self._send_all())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        try:
            if self._wait_when_sent:
                # The answer must outlive the caller's cancellation, to be waited for below.
                return await asyncio.shield(waiting.answer)
            # Else the caller's cancellation cancels its answer, and nothing else: the sender
            # gives no answer to a call whose answer is done (``_settle``), and the batch goes
            # on for the others. No shield (a future and a task callback more, per call).
            return await waiting.answer
        except asyncio.CancelledError:
            # Not taken into a batch yet: it is not sent at all (the queue holds only calls
            # no sender has taken).
            for index, queued in enumerate(self._queue):
                if queued is waiting:
                    del self._queue[index]
                    waiting.answer.cancel()
                    raise
            if self._wait_when_sent:
                # On its way: not taken back, so not left behind either. Bounded by the send's
                # own bounds (a statement's command timeout), as an unbatched call would be.
                await _answered(waiting.answer)
            raise

    async def _send_all(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            await self._send_batch(batch)

    async def _send_batch(self, batch: list[_Waiting[_Call, _Answer]]) -> None:
        try:
            outcomes = await self._send([w.call for w in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(batch)} calls were answered with {len(outcomes)}")
        except asyncio.CancelledError:
            # The service is stopping: nobody is left to send what is queued.
            for waiting in batch + self._queue:
                _settle(waiting, self._stopped())
            self._queue.clear()
            raise
        except BaseException as exc:
            given: set[int] = set()
            for waiting in batch:
                _settle(waiting, exc, given)
            if not isinstance(exc, Exception):
                raise  # SystemExit, KeyboardInterrupt: the callers know; the process must too
            return
        self.batches += 1
        self.calls += len(batch)
        given = set()
        for waiting, outcome in zip(batch, outcomes, strict=True):
            _settle(waiting, outcome, given)


async def _answered(answer: asyncio.Future[Any]) -> None:
    """Wait until ``answer`` is done; a further cancellation does not cut the wait short (the
    caller raises its cancellation once it is)."""
    while not answer.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({answer})


def _settle(
    waiting: _Waiting[_Call, _Answer],
    outcome: _Answer | BaseException,
    given: set[int] | None = None,
) -> None:
    """Answer ``waiting`` with ``outcome``; an exception given already to another caller of
    the batch (``given``: their ids) is given as a copy of its own."""
    if waiting.answer.done():
        return
    if isinstance(outcome, BaseException):
        if given is not None:
            if id(outcome) in given:
                outcome = _own_copy(outcome)
            else:
                given.add(id(outcome))
        waiting.answer.set_exception(outcome)
        # Retrieved here: a caller that was cancelled never will, and asyncio would log it.
        waiting.answer.exception()
    else:
        waiting.answer.set_result(outcome)


def _own_copy(exc: BaseException) -> BaseException:
    """``exc`` as a new object: same type, arguments, attributes, cause and traceback, for one
    more caller to raise (and chain to what it handles) without touching the others'. ``exc``
    itself when it cannot be copied."""
    try:
        mine = copy.copy(exc)
    except Exception:
        return exc
    if mine is exc or type(mine) is not type(exc):
        return exc
    mine.__cause__ = exc.__cause__
    mine.__context__ = exc.__context__
    mine.__suppress_context__ = exc.__suppress_context__
    mine.__traceback__ = exc.__traceback__
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        mine.__notes__ = list(notes)
    return mine
