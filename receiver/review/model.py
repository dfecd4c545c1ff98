"""The plain records the review works on: runs as the store recorded them, with their steps,
approvals and audit trail, and the alert events the automation did not act on.

Pure data, no I/O: ``receiver.review.loader`` builds them from the store's rows, the rest of the
review (incidents, timeline, report, effectiveness) reads only these. Outcomes and states are
plain strings, never enums: a run recorded by a newer version with an outcome this one does not
know still loads and is shown as what it is (``receiver.review.outcomes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from remediations.targets import Target

__all__ = ["Alert", "Approval", "AuditEntry", "Run", "Step", "Unacted"]


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert as it fired: ``starts_at`` is the text Alertmanager sent (when the alert began
    firing at its source), ``received_at`` when this service stored it (None when unknown),
    ``refire`` which occurrence of the episode (fingerprint, starts_at) it is: 0 for the first
    firing, n after the n-th re-fire with the same startsAt (README "Re-fires with the same
    startsAt"). ``unreadable``: the fields of its event row that cannot be read (an edit of the
    table; those fields are then empty), field -> why."""

    alertname: str
    fingerprint: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    generator_url: str = ""
    starts_at: str = ""
    received_at: datetime | None = None
    refire: int = 0
    unreadable: Mapping[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """The alert's own one-line explanation (``summary``, else ``description``)."""
        return str(self.annotations.get("summary") or self.annotations.get("description") or "")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit chain (``data`` as recorded). ``unreadable``: why its data cannot
    be read (``data`` is then empty): a number or nesting Python cannot read, or not an object,
    which only an edit of the table writes; the pages mark the row rather than fail on it.
    ``folded_into``: for an entry read out of a refused run's one ``run.created`` row (its
    ``run.refused`` and ``run.announced``, ``receiver.audit_folds``), that row's id, which
    ``id`` repeats; None for an entry that is a stored row of its own kind."""

    id: int
    at: datetime
    kind: str
    data: Mapping[str, Any]
    unreadable: str | None = None
    folded_into: int | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a run: ``phase`` 'run', 'resolve' or 'on_failed'; ``before``/``after`` what
    the action saw and left (None when it did not say); ``may_have_acted``: it failed after its
    request may have reached its system (a possible change: check the target by hand);
    ``unreadable``: which of params, before and after cannot be read (an edit of the table;
    they are then empty), field -> why."""

    phase: str
    idx: int
    action: str
    outcome: str
    message: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    needs_approval: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    may_have_acted: bool = False
    unreadable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Approval:
    """One approval of a step, with the plan the engineer was shown (``before``/``after``);
    ``unreadable``: {"plan": why} when the plan cannot be read (an edit of the table)."""

    id: str
    step_idx: int
    action: str
    risk: str
    state: str
    requested_at: datetime
    expires_at: datetime
    summary: str = ""
    before: Any = None
    after: Any = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    channel: str | None = None
    reason: str | None = None
    unreadable: Mapping[str, str] = field(default_factory=dict)

    @property
    def waited_s(self) -> float | None:
        """Seconds from the request to the decision (or expiry), None while pending."""
        if self.decided_at is None:
            return None
        return max(0.0, (self.decided_at - self.requested_at).total_seconds())


@dataclass(frozen=True, slots=True)
class Run:
    """One run as the store holds it. ``group_key`` is the alert group's key (empty when the
    run predates it being kept); ``time_to_resolve_s`` is seconds from the run's creation to the
    alert's resolution. ``unreadable``: its own times that cannot be read (an edit of the
    table: ``receiver.unreadable.UnreadableTime``), field -> why."""

    id: str
    rule: str
    alert: Alert
    target: Target
    outcome: str
    created_at: datetime
    group_key: str = ""
    dry_run: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    verify_deadline: datetime | None = None
    resolved_at: datetime | None = None
    time_to_resolve_s: float | None = None
    refusal_guard: str | None = None
    refusal_reason: str | None = None
    retry_at: datetime | None = None
    error: str | None = None
    # How its verification ended, when the store records it (verified, not_resolved, recurred).
    verify_result: str | None = None
    steps: tuple[Step, ...] = ()
    approvals: tuple[Approval, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    unreadable: Mapping[str, str] = field(default_factory=dict)

    @property
    def end(self) -> datetime:
        """The last moment the run is known to have been about: its alert's resolution, else
        its end, else its creation."""
        times = [t for t in (self.created_at, self.finished_at, self.resolved_at) if t]
        return max(times)


@dataclass(frozen=True, slots=True)
class Unacted:
    """An alert event the automation did not act on, and why: no rule matched it
    (``reason``, e.g. ``no rule matches``), or rules matched and were skipped (``skips``:
    (rule, reason) pairs, e.g. an invalid target or a denied namespace; the rule is '' for a
    reason about the event as a whole, e.g. a late copy of a resolved occurrence).
    ``unreadable``: {"skips": why} when its skips cannot be read (an edit of the table; they
    are then one reason about the event saying so)."""

    event_id: int
    alert: Alert
    status: str
    received_at: datetime
    group_key: str = ""
    reason: str | None = None
    skips: tuple[tuple[str, str], ...] = ()
    unreadable: Mapping[str, str] = field(default_factory=dict)

    @property
    def matched(self) -> bool:
        """Whether some rule matched the alert (and was skipped)."""
        return any(rule for rule, _ in self.skips)
