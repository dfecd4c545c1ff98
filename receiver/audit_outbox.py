"""The kill switch on the record: every pause and resume reaches the audit log, once, in the
order they happened, even when PostgreSQL was down or frozen at the time.

A pause or resume takes effect in Redis with its record queued in the audit outbox in the same
step (``receiver.guards.switch``). Then:

- the route writes the outbox at once, through its own record (``AuditedSwitch.pause`` and
  ``resume``), within the routes' store bound: the row is the one it always was (with its
  ``entry`` id), and the answer says ``"audited": true``. When the store does not answer, the
  answer says ``"audited": false`` and ``"audit_queued": true``, and an error line names it;
- ``keep_draining``, a task of every replica's ``serve``, writes what is still queued once the
  store answers: records queued at least ``GRACE_S`` ago (their own route has given up by
  then), oldest first, each row marked ``"recorded_late": true`` with ``"occurred_at"`` (when
  it took effect) and ``"recorded_at"``.

Exactly once: a record's row is appended with its id in ``audit_once``, in one transaction
(``AuditLog.append_once``), and the record leaves the outbox only after that committed. A
drainer that died in between, a retry, another replica, or a route whose write was given up at
its deadline and committed later: whoever comes second finds the id and writes nothing.

In order: the outbox is a stream in the order the moves took effect in Redis; every drain
starts at its oldest record and writes a batch in one transaction in that order; a drain that
meets an id another holds uncommitted waits for it, so no record is written before one queued
earlier.

What waits in the outbox, and how long the oldest record has, is in the gauges
``remediator_audit_outbox_records`` and ``remediator_audit_outbox_oldest_age_seconds``: each
drain's read of the outbox (``KillSwitch.due``) says it, so a scrape costs Redis nothing.

A full outbox (``OUTBOX_CAP``) never holds a pause back: the move takes effect, a loud error
line says its record is not queued, and it is written directly if the store answers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from receiver.guards.policy import GuardError, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.guards.switch import OUTBOX_CAP, KillSwitch, Record, Switched
from receiver.store import OnceEntry, StoreUnavailable
from receiver.store.upkeep import repeat
from receiver.telemetry import Metrics

__all__ = ["BATCH", "DRAIN_EVERY_S", "GRACE_S", "AuditedSwitch", "OnceWriter", "Recorded"]

# How many records one transaction writes.
BATCH = 100
# How often each replica looks for records left in the outbox (an XRANGE on an empty stream).
DRAIN_EVERY_S = 5.0
# How old a record must be before a drainer writes it as late: its own route gives up after
# the guards' and the store's bounds (5 s each), so by then it has written it or never will.
GRACE_S = 15.0


class OnceWriter(Protocol):
    """Where the records are written (``receiver.store.Store``, bounded, fits)."""

    async def append_once(self, entries: Sequence[OnceEntry]) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Recorded:
    """A pause or resume (``switched``) and whether its row is in the audit log now
    (``audited``); when not, ``audit_queued`` says its record waits in the outbox and will be
    written once the store is back."""

    switched: Switched
    audited: bool

    @property
    def audit_queued(self) -> bool:
        return not self.audited and self.switched.record.queued


def _entry(record: Record, *, late: bool) -> OnceEntry:
    return OnceEntry(record.entry, record.kind, record.data, record.at, late=late)


class AuditedSwitch:
    """The kill switch of the routes (``receiver.http.deps.GuardControl``): ``guards`` for its
    status, and for the pause and the outbox, their client and keys (``cap``: the outbox's
    size); ``store`` to write the records (the routes' view, bounded; None: no audit
    log, the records stay queued), ``log`` for what went wrong. ``bound_s``: how long a
    route's write may take, all batches together."""

    def __init__(
        self,
        guards: Guards,
        store: OnceWriter | None,
        log: Any,
        *,
        cap: int = OUTBOX_CAP,
        bound_s: float = 5.0,  # the routes' store bound, receiver.http.deps.STORE_TIMEOUT_S
    ) -> None:
        self._guards = guards
        self.switch = KillSwitch(
            guards.redis, guards.keys, timeout_s=guards.settings.timeout_s, cap=cap
        )
        self._store = store
        self._log = log
        self._bound_s = bound_s

    async def status(self) -> dict[str, Any]:
        """The guards' state (``Guards.status``)."""
        return await self._guards.status()

    async def pause(self, seconds: float | None, reason: str, *, by: str, via: str) -> Recorded:
        """Pause (``KillSwitch.pause``; GuardUnavailable when Redis is out of reach), then
        write its record. Once the pause took effect nothing raises (the store away, the
        outbox's Redis away, any error in writing the records): ``Recorded.audited`` says."""
        return await self._recorded(await self.switch.pause(seconds, reason, by=by, via=via))

    async def resume(self, *, by: str, via: str) -> Recorded:
        """Lift the pause (``KillSwitch.resume``), then write its record, as ``pause``."""
        return await self._recorded(await self.switch.resume(by=by, via=via))

    async def _recorded(self, switched: Switched) -> Recorded:
        record = switched.record
        who = {"kind": record.kind, "by": record.data.get("by"), "entry": record.entry}
        if not record.queued:
            self._log.error(
                "the audit outbox is full: this record is not queued, and is lost unless the"
                " store takes it now",
                **who,
            )
        if self._store is None:
            return Recorded(switched, False)
        try:
            audited, error = await self._write_now(record), "no answer within the route's bound"
        except (StoreUnavailable, GuardUnavailable, GuardError) as exc:
            audited, error = False, str(exc)
        except Exception as exc:
            # A bug, or a record before this one the store will not take: the move took
            # effect all the same, and its answer must say so, not 500. The drain tries again.
            self._log.exception("writing the audit outbox failed", **who)
            audited, error = False, f"{type(exc).__name__}: {exc}"
        if audited:
            return Recorded(switched, True)
        if record.queued:
            self._log.error(
                "not yet recorded in the audit log: queued, to be recorded once the store is back",
                error=error,
                **who,
            )
        else:
            self._log.error("not recorded in the audit log", error=error, **who)
        return Recorded(switched, False)

    async def _write_now(self, record: Record) -> bool:
        """Write ``record`` now; whether its row is in the audit log. A queued one is written
        with every record queued before it, in order, as long as the route's bound allows."""
        assert self._store is not None
        if record.stream_id is None:
            await self._store.append_once([_entry(record, late=False)])
            return True
        deadline = time.monotonic() + self._bound_s
        while time.monotonic() < deadline:
            records = await self.switch.through(record.stream_id, limit=BATCH)
            if not records:
                return True  # removed: only ever after its row committed
            own = records[-1].entry == record.entry
            try:
                await self._write(records, own=record.entry)
            except (GuardUnavailable, GuardError):
                if own:  # written; only taking it out of the outbox failed
                    return True
                raise
            if own:
                return True
        return False

    async def _write(self, records: list[Record], *, own: str | None) -> list[str]:
        """Write ``records`` (the outbox's oldest, in order) in one transaction, then take them
        out of the outbox; the ids written now (the others were written before). Every record
        but the route's ``own`` is late. StoreUnavailable: nothing written; GuardUnavailable or
        GuardError: written, still in the outbox (the next drain takes them out, writing
        nothing)."""
        assert self._store is not None
        written = await self._store.append_once([_entry(r, late=r.entry != own) for r in records])
        late = [r for r in records if r.entry in written and r.entry != own]
        if late:
            self._log.warning(
                "recorded late in the audit log",
                records=[
                    {"kind": r.kind, "by": r.data.get("by"), "entry": r.entry, "at": _iso(r.at)}
                    for r in late
                ],
            )
        await self.switch.remove([r.stream_id for r in records if r.stream_id is not None])
        return written

    async def drain(
        self, *, min_age_s: float = GRACE_S, limit: int = BATCH, metrics: Metrics | None = None
    ) -> int:
        """Write every record queued at least ``min_age_s`` seconds ago, oldest first, as late,
        ``limit`` a transaction; how many rows were written (records another wrote first are
        taken out without a row). StoreUnavailable, GuardUnavailable: the rest stays queued.
        Without a store nothing is written. Every read of the outbox reports what waits there
        to ``metrics`` (``Metrics.audit_outbox``), before any write: so the gauges show the
        records while the store is away, and none once all are written."""
        if self._store is None:
            return 0
        total = 0
        while True:
            records, backlog = await self.switch.due(min_age_s=min_age_s, limit=limit)
            if metrics is not None:
                metrics.audit_outbox(backlog.records, backlog.oldest_age_s)
            if not records:
                return total
            # Then read again, even after a short batch: that read is what shows the gauges
            # the records gone (once per drain that wrote, a rare one).
            total += len(await self._write(records, own=None))

    async def keep_draining(
        self,
        *,
        every_s: float = DRAIN_EVERY_S,
        min_age_s: float = GRACE_S,
        metrics: Metrics | None = None,
    ) -> None:
        """Until cancelled: ``drain`` every ``every_s`` seconds, reporting to ``metrics``; a
        failure (the store or Redis away) is a warning at most every few minutes
        (``receiver.store.upkeep.repeat``)."""

        async def drain() -> None:
            await self.drain(min_age_s=min_age_s, metrics=metrics)

        await repeat(
            drain,
            every_s=every_s,
            log=self._log,
            failed="could not write the queued pauses and resumes to the audit log",
        )


def _iso(at: datetime) -> str:
    return at.isoformat()
