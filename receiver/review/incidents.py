"""Incidents: the runs of one alert group close together in time, seen as one storm.

Two ways to draw one:

- **by group and gap** (the default): the members of an incident are the runs and the firing
  alerts whose rules were skipped, of one alert group (Alertmanager's ``groupKey``); sorted by
  time, a member starts a new incident when it begins more than ``gap_s`` after everything
  before it ended (a run ends when its alert resolved, or when it finished). Alerts no rule
  matched, and resolved alerts with skips, join the incident of their group they are nearest
  to (within the gap); alone they make no incident: a catch-all feed is mostly such alerts.
- **by window**: everything between two times is one incident, whatever its group.

An incident's id is stable for the same data, so links keep working: ``g-<time>-<hash>``, the
time (UTC, to the microsecond) of its first run (of its first member when it has no run) and
the start of the SHA-256 of its group key; ``w-<from>-<to>`` for a window. ``parse_id`` reads
them back; loading the incident of an id is ``receiver.review.loader``'s job.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from receiver.review.model import AuditEntry, Run, Unacted
from receiver.timestamps import utc_strftime

__all__ = [
    "GroupRef",
    "Incident",
    "WindowRef",
    "chain_bounds",
    "group_incidents",
    "incident_key",
    "key_hash",
    "parse_id",
    "stamp",
    "window_incident",
]

_STAMP = "%Y%m%dT%H%M%S%fZ"
_HASH_CHARS = 12
# Matched whole: `re.match` with `$` also took the id followed by a line break. The digits
# are ASCII, as ids are written (strptime refuses other scripts' digits as well).
_ID = re.compile(
    r"g-([0-9]{8}T[0-9]{12}Z)-([0-9a-f]{12})|w-([0-9]{8}T[0-9]{12}Z)-([0-9]{8}T[0-9]{12}Z)"
)


def stamp(at: datetime) -> str:
    """``at`` as an id's time: UTC to the microsecond, no separators: 20261125T100000123456Z.
    The year in four digits: glibc's %Y writes the year 1 as "1", an id that read back as
    no incident (a 404 behind the page's own links)."""
    return utc_strftime(at, _STAMP)


def _unstamp(text: str) -> datetime:
    return datetime.strptime(text, _STAMP).replace(tzinfo=UTC)


def key_hash(key: str) -> str:
    """The start of the SHA-256 of a group key, as ids carry it (keys are long, with quotes)."""
    return hashlib.sha256(key.encode()).hexdigest()[:_HASH_CHARS]


def incident_key(group_key: str, alertname: str) -> str:
    """The key runs are grouped by: the alert group's key; an alert that came without one
    (an older run, or a sender that is not Alertmanager) is grouped by its alertname."""
    return group_key or f"alertname={alertname}"


@dataclass(frozen=True, slots=True)
class GroupRef:
    """What a ``g-`` id says: the first run's time and the group key's hash."""

    first: datetime
    key_hash: str


@dataclass(frozen=True, slots=True)
class WindowRef:
    """What a ``w-`` id says: the window [start, end)."""

    start: datetime
    end: datetime


def parse_id(text: str) -> GroupRef | WindowRef | None:
    """The reference an incident id carries; None when ``text`` is not an id."""
    match = _ID.fullmatch(text)
    if match is None:
        return None
    try:
        if match[1]:
            return GroupRef(_unstamp(match[1]), match[2])
        start, end = _unstamp(match[3]), _unstamp(match[4])
    except ValueError:
        return None
    return WindowRef(start, end) if start < end else None


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident: its ``runs`` (oldest first) and the alerts not acted on (``unacted``:
    matched no rule, or their rules were skipped), between ``started_at`` and ``ended_at``;
    ``service``: what the service itself did meanwhile (a pause, a rules reload, a restart, a
    refusal digest), from the audit log, filled in by the loader, in the order they happened
    (``notes.service_span``); ``service_cut``: what the loader left out of it, in words (a
    kind of which it read only the first ``SERVICE_LIMIT`` rows), empty when nothing."""

    id: str
    key: str
    started_at: datetime
    ended_at: datetime
    runs: tuple[Run, ...]
    unacted: tuple[Unacted, ...]
    service: tuple[AuditEntry, ...] = ()
    service_cut: tuple[str, ...] = ()

    @property
    def window(self) -> bool:
        """Drawn by an explicit window rather than by group and gap."""
        return self.id.startswith("w-")

    @property
    def alertnames(self) -> list[str]:
        """The alert names involved, sorted."""
        names = {r.alert.alertname for r in self.runs} | {u.alert.alertname for u in self.unacted}
        return sorted(n for n in names if n)

    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(slots=True)
class _Open:
    key: str
    start: datetime
    end: datetime
    runs: list[Run]
    members: list[Unacted]
    attached: list[Unacted]


def _defines(event: Unacted) -> bool:
    """A firing alert whose rules were skipped places an incident in time like a run does."""
    return event.status == "firing" and event.matched


def group_incidents(
    runs: Iterable[Run], events: Iterable[Unacted], *, gap_s: float
) -> list[Incident]:
    """The incidents of ``runs`` and ``events`` by group and gap (module docstring), oldest
    first. ``gap_s`` must be positive (ValueError)."""
    if gap_s <= 0:
        raise ValueError("the incident gap must be positive")
    members: dict[str, list[tuple[datetime, datetime, Run | Unacted]]] = defaultdict(list)
    loose: list[Unacted] = []
    for run in runs:
        key = incident_key(run.group_key, run.alert.alertname)
        members[key].append((run.created_at, run.end, run))
    for event in events:
        if _defines(event):
            key = incident_key(event.group_key, event.alert.alertname)
            members[key].append((event.received_at, event.received_at, event))
        else:
            loose.append(event)
    opened: dict[str, list[_Open]] = defaultdict(list)
    for key, items in members.items():
        items.sort(key=lambda m: (m[0], _order(m[2])))
        for start, end, item in items:
            runs_of = opened[key]
            if not runs_of or (start - runs_of[-1].end).total_seconds() > gap_s:
                runs_of.append(_Open(key, start, end, [], [], []))
            current = runs_of[-1]
            current.end = max(current.end, end)
            if isinstance(item, Run):
                current.runs.append(item)
            else:
                current.members.append(item)
    for event in loose:
        key = incident_key(event.group_key, event.alert.alertname)
        near = _nearest(opened.get(key, []), event.received_at, gap_s)
        if near is not None:
            near.attached.append(event)
    found = [_close(o) for group in opened.values() for o in group]
    found.sort(key=lambda i: (i.started_at, i.id))
    return found


def _order(item: Run | Unacted) -> str:
    return item.id if isinstance(item, Run) else f"~{item.event_id:020d}"


def _nearest(candidates: Sequence[_Open], at: datetime, gap_s: float) -> _Open | None:
    best: tuple[float, _Open] | None = None
    for candidate in candidates:
        if at < candidate.start:
            distance = (candidate.start - at).total_seconds()
        elif at > candidate.end:
            distance = (at - candidate.end).total_seconds()
        else:
            distance = 0.0
        if distance <= gap_s and (best is None or distance < best[0]):
            best = (distance, candidate)
    return None if best is None else best[1]


def _close(o: _Open) -> Incident:
    unacted = sorted([*o.members, *o.attached], key=lambda e: (e.received_at, e.event_id))
    first = o.runs[0].created_at if o.runs else o.start
    start = min([o.start, *(e.received_at for e in unacted)])
    end = max([o.end, *(e.received_at for e in unacted)])
    return Incident(
        id=f"g-{stamp(first)}-{key_hash(o.key)}",
        key=o.key,
        started_at=start,
        ended_at=end,
        runs=tuple(sorted(o.runs, key=lambda r: (r.created_at, r.id))),
        unacted=tuple(unacted),
    )


def window_incident(
    runs: Iterable[Run], events: Iterable[Unacted], start: datetime, end: datetime
) -> Incident:
    """Everything in [start, end) as one incident (runs by creation, events by receipt)."""
    if not start < end:
        raise ValueError("the window must end after it starts")
    inside = sorted((r for r in runs if start <= r.created_at < end), key=_run_order)
    acted_on = sorted((e for e in events if start <= e.received_at < end), key=_event_order)
    keys = {incident_key(r.group_key, r.alert.alertname) for r in inside}
    keys |= {incident_key(e.group_key, e.alert.alertname) for e in acted_on}
    return Incident(
        id=f"w-{stamp(start)}-{stamp(end)}",
        key=", ".join(sorted(keys)),
        started_at=start,
        ended_at=end,
        runs=tuple(inside),
        unacted=tuple(acted_on),
    )


def _run_order(run: Run) -> tuple[datetime, str]:
    return (run.created_at, run.id)


def _event_order(event: Unacted) -> tuple[datetime, int]:
    return (event.received_at, event.event_id)


def chain_bounds(
    members: Iterable[tuple[datetime, datetime]], anchor: datetime, gap_s: float
) -> tuple[datetime, datetime] | None:
    """(start, end) of the chain of ``members`` ((start, end) pairs of one incident key) that
    holds the member starting at ``anchor``, chained as ``group_incidents`` chains them; None
    when no member starts at ``anchor``."""
    chains: list[list[datetime]] = []
    holds: list[bool] = []
    for start, end in sorted(members):
        if not chains or (start - chains[-1][1]).total_seconds() > gap_s:
            chains.append([start, end])
            holds.append(False)
        chains[-1][1] = max(chains[-1][1], end)
        holds[-1] = holds[-1] or start == anchor
    for (start, end), held in zip(chains, holds, strict=True):
        if held:
            return start, end
    return None
