"""Durable, idempotent enqueue of webhook notifications.

``Intake.accept`` returns only after the events are committed, so a 200 means "stored".
Concurrent requests share one transaction (group commit): under an alert storm one fsync
covers many notifications, while each caller still learns its own counts, and only after the
commit. When the store is unavailable the whole batch fails with StoreUnavailable (Alertmanager
retries, and the dedupe key makes the retry harmless), and so does a notification that is not
committed within the intake timeout: every caller has its answer within that bound, whatever
PostgreSQL does (down: at once; frozen or too slow: at the bound). Any other failure of a batch
is retried one notification at a time, so only a notification that fails alone gets an error:
one bad payload never fails the others that happened to share its commit.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from structlog.typing import FilteringBoundLogger

from receiver.alertmanager import INTAKE_TIMEOUT_S
from receiver.model import Status
from receiver.priority import IntakeFirst
from receiver.store import HeldConnection, NewEvent, Store, StoreUnavailable, describe

__all__ = [
    "INTAKE_TIMEOUT_S",
    "AlertLike",
    "EventBatcher",
    "Intake",
    "IntakeFailed",
    "IntakeResult",
    "NotificationLike",
    "Settle",
    "StoreUnavailable",
    "events_of",
]


class AlertLike(Protocol):
    """What intake reads of one alert (``receiver.alertmanager.Alert`` fits)."""

    @property
    def status(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...
    @property
    def startsAt(self) -> str: ...
    @property
    def endsAt(self) -> str: ...
    @property
    def generatorURL(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...


class NotificationLike(Protocol):
    """What intake reads of a notification (``receiver.alertmanager.Notification`` fits)."""

    @property
    def groupKey(self) -> str: ...
    @property
    def receiver(self) -> str: ...
    @property
    def alerts(self) -> Sequence[AlertLike]: ...


class IntakeFailed(Exception):
    """The store refused this notification, alone, for a reason other than being unavailable.

    A bug: parsing is meant to let through only what the store can hold. The message names the
    error's type and SQLSTATE, never the values; ``__cause__`` is the store's own error, which
    concerns this notification only (it was written alone).
    """


@dataclass(frozen=True, slots=True)
class IntakeResult:
    accepted: int
    duplicates: int


# Why an event needs no worker, or None (``engine.settled_at_intake`` over the current rules).
Settle = Callable[[Status, Mapping[str, str]], str | None]


def _never(_status: Status, _labels: Mapping[str, str]) -> None:
    return None


# Status by its text: calling the enum (``Status(text)``) was about a tenth of building the
# events, once per alert (issue 12). A text not in it still goes through the enum, which raises.
_STATUSES: dict[str, Status] = {s.value: s for s in Status}


def events_of(notification: NotificationLike, settle: Settle = _never) -> list[NewEvent]:
    """One row per alert: each alert's own status and labels, never the group's common ones.
    Raises ValueError for a status that is not ``firing`` or ``resolved``."""
    events = []
    for alert in notification.alerts:
        status = _STATUSES.get(alert.status) or Status(alert.status)
        events.append(
            NewEvent(
                fingerprint=alert.fingerprint,
                starts_at=alert.startsAt,
                status=status,
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                ends_at=alert.endsAt,
                generator_url=alert.generatorURL,
                group_key=notification.groupKey,
                receiver=notification.receiver,
                settled_reason=settle(status, alert.labels),
            )
        )
    return events


# How long the writer keeps its connection once it has nothing to write: longer than the gaps
# of a busy feed (under a millisecond between two batches of a closed loop), short enough that
# a store closed without a drain (``Pool.close`` waits for the connection) hardly notices.
_LINGER_S = 0.1


@dataclass(slots=True)
class _Pending:
    events: list[NewEvent]
    done: asyncio.Future[tuple[int, int]]
    deadline: float  # loop time by which the caller has an answer


class EventBatcher:
    """Group commit without a timer: a notification is written at once when a writer is free;
    while every writer is busy, notifications queue up, and the next free writer takes all of
    them (up to ``max_batch``) in one transaction. An idle receiver answers after one write;
    under a storm one commit (one fsync) covers many notifications.

    One writer by default: on a 2-core machine it gave 0.55-0.66x the ceiling's throughput
    against 0.52-0.58x with two (bigger batches, less CPU per notification; `make bench`)."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 64,
        max_in_flight: int = 1,
        timeout_s: float = INTAKE_TIMEOUT_S,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        self._store = store
        self._timeout_s = timeout_s
        self._max_batch = max(1, max_batch)
        self._max_in_flight = max(1, max_in_flight)
        self._queue: list[_Pending] = []
        # Every caller not yet known to be answered, in submission (so deadline) order, and
        # the one timer that answers those whose deadline passes (see _sweep).
        self._unanswered: collections.deque[_Pending] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._writers: set[asyncio.Task[None]] = set()
        # One connection for the writers' batches, kept while notifications keep coming
        # (bounded.HeldConnection): taking a pool connection and giving it back for each
        # batch of a few notifications cost 12 to 53 µs of CPU per notification (stop 39).
        self._held = store.held_connection()
        self._log = log if log is not None else structlog.get_logger("remediator.intake")

    async def submit(self, events: list[NewEvent]) -> tuple[int, int]:
        """Store ``events`` (one notification); (accepted, duplicates) after the COMMIT.

        Raises StoreUnavailable (also when there is no COMMIT within ``timeout_s``), or
        IntakeFailed when this notification fails on its own.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(events, loop.create_future(), loop.time() + self._timeout_s)
        self._queue.append(pending)
        # A writer that found the queue empty is done() at once (it leaves the set only later,
        # by callback), and nothing awaits between that look and its end: a writer that is not
        # done will still see what was queued here.
        if sum(not w.done() for w in self._writers) < self._max_in_flight:
            # The writer starts on the loop's next turn, so notifications that arrive in this
            # turn share its first transaction.
            writer = loop.create_task(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        # One timer for all callers, not one each: creating and cancelling a timer per webhook
        # was 5 % of intake's CPU. Answers come back about in submission order, so the callers
        # answered already are dropped from the front here, and the deque stays short.
        unanswered = self._unanswered
        while unanswered and unanswered[0].done.done():
            unanswered.popleft()
        unanswered.append(pending)
        if self._sweeper is None:
            self._sweeper = loop.call_at(unanswered[0].deadline, self._sweep)
        # A caller that goes away (client disconnect) cancels only its own future: the write is
        # the writer's, so the others' answers and the batch itself are not affected.
        return await pending.done

    def _sweep(self) -> None:
        """Answer every caller whose deadline has passed, then wait for the next deadline.

        No answer within the timeout: still queued, it is never written; being written, it
        may yet commit, and the copy Alertmanager sends after the 503 is then a duplicate."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        unanswered = self._unanswered
        while unanswered and (unanswered[0].done.done() or unanswered[0].deadline <= now):
            pending = unanswered.popleft()
            if pending.done.done():
                continue
            # Said in the answer's error (logged by the webhook): an operator who finds the
            # alert's run after a 503 that said "not accepted" is told why.
            if pending in self._queue:
                self._queue.remove(pending)
                fate = "it was never written"
            else:
                fate = "its write may still commit, and Alertmanager's resend is then a duplicate"
            pending.done.set_exception(
                StoreUnavailable(f"not committed within {self._timeout_s:g}s; {fate}")
            )
        if unanswered:
            self._sweeper = loop.call_at(unanswered[0].deadline, self._sweep)

    async def _write(self) -> None:
        held = self._held
        while self._queue:
            await self._write_batch(held)
            await self._answers_first()
        # Nothing awaits between the look above and the end (submit counts on it), so the
        # connection is given back later, unless the next writer takes it up before.
        held.release_later(_LINGER_S)

    async def _answers_first(self) -> None:
        """One turn of the loop between a batch's commit and the next: its callers send their
        answers first, and webhooks that came meanwhile join the next batch. Going straight
        on, the writer built and sent the next statement while the answers (and so each
        client's next webhook) waited: 5,545 notifications/s against 6,070 now (medians of
        six rounds in turn, 32 at once; docs/performance-history.md, stop 48). Not a timer:
        one idle turn takes microseconds. Cancelled here, what is queued fails."""
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self._abandon([])
            raise

    async def _write_batch(self, held: HeldConnection) -> None:
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        try:
            results = await self._store.insert_event_groups(
                [p.events for p in batch], timeout_s=self._timeout_s, held=held
            )
        except StoreUnavailable as exc:
            _fail(batch, exc)  # this batch only: the next one may well succeed
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, _failed(exc))
                return
            # Nothing of the batch was stored (one statement). Which notification is at fault
            # cannot be told from the error, and its message may quote any of them: describe it
            # without values, then write each alone so only the guilty one fails.
            self._log.warning(
                "group commit failed; writing its notifications one at a time",
                notifications=len(batch),
                error=describe(exc),
            )
            await self._write_alone(batch, held)
            return
        except BaseException:
            self._abandon(batch)
            raise
        _settle(batch, results)

    async def _write_alone(self, batch: list[_Pending], held: HeldConnection) -> None:
        for index, item in enumerate(batch):
            try:
                results = await self._store.insert_event_groups(
                    [item.events], timeout_s=self._timeout_s, held=held
                )
            except StoreUnavailable as exc:
                _fail(batch[index:], exc)
                return
            except Exception as exc:
                _fail([item], _failed(exc))
                continue
            except BaseException:
                self._abandon(batch[index:])
                raise
            _settle([item], results)

    def _abandon(self, batch: list[_Pending]) -> None:
        # Cancelled (shutdown): nobody may be left to write what is queued. Unanswered
        # notifications get an error, so Alertmanager sends them again.
        _fail(batch + self._queue, StoreUnavailable("intake stopped"))
        self._queue.clear()

    async def drain(self) -> None:
        """Wait until everything submitted is written (graceful shutdown)."""
        while self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)
        # Given back now, not at the end of its linger: the store closes next (service.py).
        await self._held.release()


def _fail(batch: Sequence[_Pending], exc: Exception) -> None:
    for item in batch:
        if not item.done.done():
            item.done.set_exception(exc)


def _settle(batch: Sequence[_Pending], results: Sequence[tuple[int, int]]) -> None:
    for item, counts in zip(batch, results, strict=True):
        if not item.done.done():
            item.done.set_result(counts)


def _failed(exc: Exception) -> IntakeFailed:
    failed = IntakeFailed(f"the store refused the notification: {describe(exc)}")
    failed.__cause__ = exc
    return failed


class Intake:
    """The webhook's only dependency on storage: ``accept`` a parsed notification.

    Raises StoreUnavailable when PostgreSQL cannot be reached or has not committed within
    ``timeout_s`` seconds (the HTTP layer answers 503 and Alertmanager retries), IntakeFailed
    when the store refuses this notification itself (a bug: 500). ``group_commit=False``
    writes every notification in its own transaction. ``settle`` picks the events that are
    stored already done because no worker needs to see them; by default every event is queued.
    ``first``: told of each notification in progress, to hold the worker of the same loop back
    in a flood (receiver.priority.IntakeFirst).
    """

    def __init__(
        self,
        store: Store,
        *,
        group_commit: bool = True,
        max_batch: int = 64,
        max_in_flight: int = 1,
        timeout_s: float = INTAKE_TIMEOUT_S,
        settle: Settle = _never,
        first: IntakeFirst | None = None,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        self._store = store
        self._settle = settle
        self._first = first
        self._timeout_s = timeout_s
        self._batcher = (
            EventBatcher(
                store,
                max_batch=max_batch,
                max_in_flight=max_in_flight,
                timeout_s=timeout_s,
                log=log,
            )
            if group_commit
            else None
        )

    async def accept(self, notification: NotificationLike) -> IntakeResult:
        """Store the notification's alerts; the counts come after the COMMIT."""
        first = self._first
        if first is None:
            return await self._accept(notification)
        first.entered()
        try:
            return await self._accept(notification)
        finally:
            first.left()

    async def _accept(self, notification: NotificationLike) -> IntakeResult:
        events = events_of(notification, self._settle)
        if not events:
            return IntakeResult(0, 0)
        if self._batcher is None:
            try:
                accepted, duplicates = await self._store.insert_events(
                    events, timeout_s=self._timeout_s
                )
            except StoreUnavailable:
                raise
            except Exception as exc:
                raise _failed(exc) from exc
        else:
            accepted, duplicates = await self._batcher.submit(events)
        return IntakeResult(accepted, duplicates)

    async def drain(self) -> None:
        if self._batcher is not None:
            await self._batcher.drain()
