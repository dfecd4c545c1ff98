"""Loading what the review shows: runs, incidents and reports, from the store's rows.

The store (``receiver.store.review``) reads; ``rows.py`` turns its rows into the review's
records (``model.py``); this module finds incidents whole. An incident drawn by group and gap
may begin before a window and end after it: its members are followed back and forth, a day at
a time, to where the gap breaks the chain, so an incident has the same members and the same id
whichever window (or link) it is reached from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from receiver.alertmanager import LATEST
from receiver.config.settings import INCIDENT_GAP_S
from receiver.review.incidents import (
    GroupRef,
    Incident,
    WindowRef,
    chain_bounds,
    group_incidents,
    incident_key,
    key_hash,
    parse_id,
    window_incident,
)
from receiver.review.model import Run, Unacted
from receiver.review.notes import service_span
from receiver.review.report import build_report
from receiver.review.rows import audit_entry_of, run_of, unacted_of
from receiver.review.text import at_text
from receiver.store.review import SERVICE_LIMIT
from receiver.timestamps import shifted

__all__ = ["MAX_RUNS", "SERVICE_KINDS", "Review", "ReviewStore", "ReviewTooLarge"]

# The most runs one page, incident or report reads, and the most alerts nothing was done for
# (unmatched, skipped): a bound on memory and time per request.
MAX_RUNS = 20000
# The service's own moves an incident shows (audit rows of no run).
SERVICE_KINDS = (
    "announcements.digest",
    "guards.pause",
    "guards.resume",
    "rules.reloaded",
    "rules.reload_failed",
    "service.started",
    "service.stopped",
)
# How far each step of following an incident's chain reads at once.
_CHUNK = timedelta(days=1)
_MAX_STEPS = 400


# What to do about a ReviewTooLarge: an incident by group and gap is read whole, however far
# it reaches past the window; the window as one incident reads the window only.
_NARROW = "narrow the window, or group by window (group_by=window; remediator report --window)"


class ReviewTooLarge(Exception):
    """More runs, or more alerts nothing was done for, than the review reads at once
    (``MAX_RUNS`` of each): narrow the window, or read the window as one incident."""


class ReviewStore(Protocol):
    """The reads the review needs (``receiver.store.Store`` fits; see ``store.review``)."""

    async def review_runs(
        self,
        *,
        since: datetime | None = ...,
        until: datetime | None = ...,
        keys: Sequence[str] | None = ...,
        run_ids: Sequence[str] | None = ...,
        limit: int = ...,
    ) -> list[dict[str, Any]]: ...

    async def review_events(
        self,
        *,
        since: datetime,
        until: datetime,
        keys: Sequence[str] | None = ...,
        limit: int = ...,
    ) -> list[dict[str, Any]]: ...

    async def review_member_times(
        self, key: str, since: datetime, until: datetime
    ) -> list[tuple[datetime, datetime]]: ...

    async def review_keys_at(self, at: datetime) -> list[str]: ...

    async def sign_out_session(self, digest: bytes, for_s: float) -> None: ...

    async def session_signed_out(self, digest: bytes) -> bool: ...

    async def review_service_audit(
        self, since: datetime, until: datetime, kinds: Sequence[str], *, limit: int = ...
    ) -> list[dict[str, Any]]: ...

    async def review_run_page(
        self,
        *,
        alertname: str | None = ...,
        rule: str | None = ...,
        target: Any = ...,
        outcome: Any = ...,
        since: datetime | None = ...,
        limit: int = ...,
        cursor: str | None = ...,
    ) -> tuple[list[dict[str, Any]], str | None]: ...


def _worth_showing(event: Unacted) -> bool:
    # A resolved alert no rule matched says nothing a reviewer needs (a catch-all feed has one
    # per unmatched alert); one whose rule was skipped does.
    return event.status == "firing" or event.matched


class Review:
    """Runs, incidents and reports over a ``ReviewStore``. ``gap_s``: the default incident
    gap; ``max_runs``, ``max_service``: the most runs (and alerts nothing was done for), and
    service rows of each kind, read at once; ``clock``: now, as an aware datetime (for the
    report's generation time)."""

    def __init__(
        self,
        store: ReviewStore,
        *,
        gap_s: float = INCIDENT_GAP_S,
        max_runs: int = MAX_RUNS,
        max_service: int = SERVICE_LIMIT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.gap_s = gap_s
        self.max_runs = max_runs
        self.max_service = max_service
        self.clock = clock

    async def _runs(self, **filters: Any) -> list[Run]:
        rows = await self.store.review_runs(limit=self.max_runs, **filters)
        if len(rows) > self.max_runs:
            raise ReviewTooLarge(
                f"more than {self.max_runs} runs to read at once (the window's, and by group"
                f" and gap those of every incident it touches, read whole): {_NARROW}"
            )
        return [run_of(r) for r in rows]

    async def _events(self, **filters: Any) -> list[Unacted]:
        rows = await self.store.review_events(limit=self.max_runs, **filters)
        if len(rows) > self.max_runs:
            raise ReviewTooLarge(
                f"more than {self.max_runs} alerts nothing was done for (no rule matched, or"
                f" rules skipped) to read at once (the window's, and by group and gap those of"
                f" every incident it touches, read whole): {_NARROW}"
            )
        return [e for e in map(unacted_of, rows) if _worth_showing(e)]

    async def _with_service(self, incidents: list[Incident]) -> list[Incident]:
        """Each incident with what the service itself did while it lasted, placed by when it
        happened (``service_span``: a pause recorded late by its ``occurred_at``, a refusal
        digest by the window it counts, which overlaps the incident), in that order. A kind
        with more rows than the review reads at once (``SERVICE_LIMIT`` each) is cut after the
        first, and every incident read with it says so (``Incident.service_cut``)."""
        if not incidents:
            return incidents
        rows = await self.store.review_service_audit(
            min(i.started_at for i in incidents),
            max(i.ended_at for i in incidents),
            SERVICE_KINDS,
            limit=self.max_service,
        )
        entries = [audit_entry_of(r) for r in rows]
        placed = sorted(((service_span(e), e) for e in entries), key=lambda p: (p[0][0], p[1].id))
        cut = _service_cut(rows, self.max_service)
        return [
            dataclasses.replace(
                i,
                service=tuple(
                    e for (lo, hi), e in placed if lo <= i.ended_at and hi >= i.started_at
                ),
                service_cut=cut,
            )
            for i in incidents
        ]

    async def run(self, run_id: str) -> Run | None:
        """One run with everything recorded about it; None when there is none."""
        found = await self._runs(run_ids=[run_id]) if _uuid_like(run_id) else []
        return found[0] if found else None

    async def run_page(self, **filters: Any) -> tuple[list[Run], str | None]:
        """A page of runs without their details (``ReviewStore.review_run_page``'s filters)."""
        rows, cursor = await self.store.review_run_page(**filters)
        return [run_of(r) for r in rows], cursor

    async def _bounds(self, key: str, anchor: datetime, gap_s: float) -> tuple[datetime, datetime]:
        """Where the incident of ``key`` holding the member that starts at ``anchor`` begins
        and ends, following its chain a day at a time."""
        lo, hi = anchor, anchor
        for _ in range(_MAX_STEPS):
            # shifted: a time edited out of Python's years is read at the end of its range.
            since, until = shifted(lo, -_CHUNK), shifted(hi, _CHUNK)
            times = await self.store.review_member_times(key, since, until)
            found = chain_bounds(times, anchor, gap_s) or (anchor, anchor)
            gap = timedelta(seconds=gap_s)
            if shifted(found[0], -gap) > since and shifted(found[1], gap) < until:
                return found
            lo, hi = found
        return lo, hi

    async def _incidents_of(
        self, spans: Mapping[str, tuple[datetime, datetime]], gap_s: float
    ) -> list[Incident]:
        """Every incident of the keys in ``spans``, each read whole within its span."""
        if not spans:
            return []
        gap = timedelta(seconds=gap_s)
        since = min(lo for lo, _ in spans.values())
        until = shifted(max(hi for _, hi in spans.values()), timedelta(microseconds=1))
        runs = [
            r
            # At Python's last instant, no bound: a run created at 'infinity' (edited; read at
            # that instant) is not before it.
            for r in await self._runs(
                since=since, until=None if until == LATEST else until, keys=list(spans)
            )
            if _within(spans, incident_key(r.group_key, r.alert.alertname), r.created_at)
        ]
        events = [
            e
            for e in await self._events(
                since=shifted(since, -gap), until=shifted(until, gap), keys=list(spans)
            )
            if _within(spans, incident_key(e.group_key, e.alert.alertname), e.received_at, gap)
        ]
        return await self._with_service(group_incidents(runs, events, gap_s=gap_s))

    async def incidents(
        self, start: datetime, end: datetime, *, gap_s: float | None = None
    ) -> tuple[list[Incident], list[Run]]:
        """The incidents with a member in [start, end), each whole, oldest first; and the
        runs created in the window (what effectiveness is computed over)."""
        gap_s = gap_s or self.gap_s
        window_runs = await self._runs(since=start, until=end)
        events = [e for e in await self._events(since=start, until=end) if e.matched]
        firsts: dict[str, list[datetime]] = {}
        for run in window_runs:
            key = incident_key(run.group_key, run.alert.alertname)
            firsts.setdefault(key, []).append(run.created_at)
        for event in events:
            if event.status == "firing":
                key = incident_key(event.group_key, event.alert.alertname)
                firsts.setdefault(key, []).append(event.received_at)
        spans: dict[str, tuple[datetime, datetime]] = {}
        for key, times in firsts.items():
            lo, _ = await self._bounds(key, min(times), gap_s)
            _, hi = await self._bounds(key, max(times), gap_s)
            spans[key] = (lo, hi)
        found = await self._incidents_of(spans, gap_s)
        return [i for i in found if i.ended_at >= start and i.started_at < end], window_runs

    async def incident(self, incident_id: str, *, gap_s: float | None = None) -> Incident | None:
        """The incident an id names (``incidents.parse_id``); None when there is none."""
        ref = parse_id(incident_id)
        if isinstance(ref, WindowRef):
            runs = await self._runs(since=ref.start, until=ref.end)
            events = await self._events(since=ref.start, until=ref.end)
            [whole] = await self._with_service([window_incident(runs, events, ref.start, ref.end)])
            return whole
        if not isinstance(ref, GroupRef):
            return None
        gap_s = gap_s or self.gap_s
        for key in await self.store.review_keys_at(ref.first):
            if key_hash(key) != ref.key_hash:
                continue
            span = await self._bounds(key, ref.first, gap_s)
            for incident in await self._incidents_of({key: span}, gap_s):
                if incident.id == incident_id:
                    return incident
        return None

    async def incident_of(self, run: Run, *, gap_s: float | None = None) -> Incident | None:
        """The incident (by group and gap) that ``run`` belongs to."""
        gap_s = gap_s or self.gap_s
        key = incident_key(run.group_key, run.alert.alertname)
        span = await self._bounds(key, run.created_at, gap_s)
        for incident in await self._incidents_of({key: span}, gap_s):
            if any(r.id == run.id for r in incident.runs):
                return incident
        return None

    async def report(
        self, start: datetime, end: datetime, *, by_window: bool = False, gap_s: float | None = None
    ) -> dict[str, Any]:
        """The report of [start, end) (``receiver.review.report``): incidents by group and gap,
        or the whole window as one incident."""
        if by_window:
            runs = await self._runs(since=start, until=end)
            events = await self._events(since=start, until=end)
            incidents = await self._with_service([window_incident(runs, events, start, end)])
            used_gap = None
        else:
            used_gap = gap_s or self.gap_s
            incidents, runs = await self.incidents(start, end, gap_s=used_gap)
        return build_report(
            incidents, runs, start=start, end=end, gap_s=used_gap, generated_at=self.clock()
        )


def _service_cut(rows: Sequence[Mapping[str, Any]], limit: int) -> tuple[str, ...]:
    """In words, each kind of service row read only in part (``total`` above ``limit``)."""
    last: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        last[row["kind"]] = row
    return tuple(
        f"{int(row['total']) - limit} more {kind} rows than the review reads at once ({limit}"
        f" of each kind) are left out: those written after {at_text(row['at'])}; narrow the"
        " window to see them"
        for kind, row in sorted(last.items())
        if int(row.get("total") or 0) > limit
    )


def _within(
    spans: Mapping[str, tuple[datetime, datetime]],
    key: str,
    at: datetime,
    slack: timedelta = timedelta(0),
) -> bool:
    span = spans.get(key)
    return span is not None and shifted(span[0], -slack) <= at <= shifted(span[1], slack)


def _uuid_like(text: str) -> bool:
    parts: Sequence[str] = text.split("-")
    return len(text) == 36 and len(parts) == 5 and all(_hex(p) for p in parts)


def _hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
