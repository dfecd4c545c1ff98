"""Durable, idempotent enqueue of webhook notifications.

``Intake.accept`` returns only after the events are committed, so a 200 means "stored".
Concurrent requests share one transaction (group commit): under an alert storm one fsync
covers many notifications, while each caller still learns its own counts, and only after the
commit. A failed transaction fails every caller of that batch; Alertmanager then retries them
and the dedupe key makes the retry harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from receiver.model import Status
from receiver.store.repository import NewEvent, Store, StoreUnavailable

__all__ = [
    "AlertLike",
    "EventBatcher",
    "Intake",
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


@dataclass(frozen=True, slots=True)
class IntakeResult:
    accepted: int
    duplicates: int


# Why an event needs no worker, or None (``engine.settled_at_intake`` over the current rules).
Settle = Callable[[Status, Mapping[str, str]], str | None]


def _never(_status: Status, _labels: Mapping[str, str]) -> None:
    return None


def events_of(notification: NotificationLike, settle: Settle = _never) -> list[NewEvent]:
    """One row per alert: each alert's own status and labels, never the group's common ones."""
    events = []
    for alert in notification.alerts:
        status = Status(alert.status)
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


@dataclass(slots=True)
class _Pending:
    events: list[NewEvent]
    done: asyncio.Future[tuple[int, int]]


@dataclass(slots=True)
class _Batch:
    items: list[_Pending] = field(default_factory=list)
    full: asyncio.Event = field(default_factory=asyncio.Event)


class EventBatcher:
    """Group commit: submissions within ``max_delay_s`` (or until ``max_batch``) share one
    transaction. The first submission of a batch opens the window; the batch is written when
    the window closes or the batch is full, whichever comes first."""

    def __init__(self, store: Store, *, max_delay_s: float = 0.002, max_batch: int = 64) -> None:
        self._store = store
        self._max_delay_s = max_delay_s
        self._max_batch = max(1, max_batch)
        self._open: _Batch | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def submit(self, events: list[NewEvent]) -> tuple[int, int]:
        """Store ``events`` (one notification); (accepted, duplicates) after the COMMIT."""
        loop = asyncio.get_running_loop()
        pending = _Pending(events, loop.create_future())
        batch = self._open
        if batch is None:
            batch = self._open = _Batch()
            task = loop.create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        batch.items.append(pending)
        if len(batch.items) >= self._max_batch:
            self._close(batch)
        # A caller that goes away (client disconnect) cancels only its own future: the write is
        # the flush task's, so the others' answers and the batch itself are not affected.
        return await pending.done

    def _close(self, batch: _Batch) -> None:
        if self._open is batch:
            self._open = None
        batch.full.set()

    async def _flush(self, batch: _Batch) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(batch.full.wait(), self._max_delay_s)
        self._close(batch)
        try:
            results = await self._store.insert_event_groups([p.events for p in batch.items])
        except BaseException as exc:
            for item in batch.items:
                if not item.done.done():
                    item.done.set_exception(
                        exc if isinstance(exc, Exception) else StoreUnavailable("cancelled")
                    )
            if not isinstance(exc, Exception):
                raise
            return
        for item, counts in zip(batch.items, results, strict=True):
            if not item.done.done():
                item.done.set_result(counts)

    async def drain(self) -> None:
        """Wait for every batch in flight (graceful shutdown)."""
        if self._open is not None:
            self._close(self._open)
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


class Intake:
    """The webhook's only dependency on storage: ``accept`` a parsed notification.

    Raises StoreUnavailable when PostgreSQL cannot be reached (the HTTP layer answers 503 and
    Alertmanager retries). ``group_commit=False`` writes every notification in its own
    transaction. ``settle`` picks the events that are stored already done because no worker
    needs to see them; by default every event is queued.
    """

    def __init__(
        self,
        store: Store,
        *,
        group_commit: bool = True,
        max_delay_s: float = 0.002,
        max_batch: int = 64,
        settle: Settle = _never,
    ) -> None:
        self._store = store
        self._settle = settle
        self._batcher = (
            EventBatcher(store, max_delay_s=max_delay_s, max_batch=max_batch)
            if group_commit
            else None
        )

    async def accept(self, notification: NotificationLike) -> IntakeResult:
        events = events_of(notification, self._settle)
        if not events:
            return IntakeResult(0, 0)
        if self._batcher is None:
            accepted, duplicates = await self._store.insert_events(events)
        else:
            accepted, duplicates = await self._batcher.submit(events)
        return IntakeResult(accepted, duplicates)

    async def drain(self) -> None:
        if self._batcher is not None:
            await self._batcher.drain()
