"""Plain data shared by the stages: stored alert events, engine input (history) and output (plans).

No I/O and no behaviour beyond small derived properties, so every stage can depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from receiver.alertmanager import ZERO_TIME
from receiver.approval_records import ApprovalRecord, ApprovalState
from remediations.targets import Target

__all__ = [
    "ANNOUNCEMENTS",
    "UNDO_UNREACHABLE_RETRY_S",
    "UNREACHABLE_RETRY_S",
    "AlertEvent",
    "Announce",
    "Announcement",
    "Approval",
    "ApprovalRecord",
    "ApprovalState",
    "Disposition",
    "GuardSpec",
    "History",
    "NamespacePolicy",
    "Plan",
    "PriorRun",
    "Recurrence",
    "ResolvePlan",
    "RunOutcome",
    "RunPlan",
    "Skip",
    "Status",
    "StepPlan",
    "Target",
    "Verdict",
    "VerdictKind",
    "VerifyResult",
]


class Status(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert of one notification, as stored. Unique on (``occurrence``, status).

    ``refire`` numbers the occurrences of one episode: 0 for the alert's first firing, n after
    Alertmanager resolved it n times and the source sent it again with the same startsAt
    (``store.events`` assigns it at intake; the README states the rule)."""

    id: int
    fingerprint: str
    # The raw RFC 3339 string Alertmanager sent: keys use it verbatim (it keeps nanoseconds).
    starts_at: str
    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    ends_at: str = ZERO_TIME
    generator_url: str = ""
    group_key: str = ""
    receiver: str = ""
    received_at: datetime | None = None
    refire: int = 0

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def episode(self) -> tuple[str, str]:
        return (self.fingerprint, self.starts_at)

    @property
    def occurrence(self) -> tuple[str, str, int]:
        """(fingerprint, starts_at, refire): what one run is created for, at most once a rule."""
        return (self.fingerprint, self.starts_at, self.refire)


@dataclass(frozen=True, slots=True)
class NamespacePolicy:
    """Where actions may go. An empty allow list allows every namespace not denied."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ("kube-system", "kube-public", "kube-node-lease")

    def permits(self, namespace: str) -> bool:
        if namespace in self.deny:
            return False
        return not self.allow or namespace in self.allow


class Approval(StrEnum):
    AUTO = "auto"  # follow the action's risk: high needs approval
    REQUIRED = "required"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One step to run. ``unreadable``: why the params stored for it cannot be read (a step
    taken up again from a row edited since: ``receiver.store.stored_json``); it then fails
    without its action being called, rather than run on a guess."""

    index: int
    action: str
    params: Mapping[str, Any]
    needs_approval: bool
    description: str = ""
    unreadable: str = ""


@dataclass(frozen=True, slots=True)
class GuardSpec:
    cooldown_s: float | None = None
    max_runs: int | None = None
    max_runs_per_s: float | None = None


class Announcement(StrEnum):
    """The moments of a run a rule's ``notify: {events: [...]}`` can announce."""

    STARTED = "started"  # admitted by the guards, its steps about to run
    REFUSED = "refused"  # a guard said no
    AWAITING_APPROVAL = "awaiting_approval"  # a step waits for an engineer
    FINISHED = "finished"  # its steps are done (succeeded, verifying, dry_run, failed)
    VERIFICATION_FAILED = "verification_failed"  # not resolved in time, or it recurred
    UNDO_FAILED = "undo_failed"  # its undo (on_resolved) stopped: refused, failed, interrupted


ANNOUNCEMENTS = tuple(Announcement)


@dataclass(frozen=True, slots=True)
class Announce:
    """A rule's ``notify:``: the channel (one of ``notify.channels``) and which moments."""

    channel: str
    events: frozenset[Announcement] = frozenset(ANNOUNCEMENTS)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A new run: one rule, one rendered and validated target, the steps that apply now.

    ``decision``: why these steps and not the others (the conditions of each step, the live
    facts they were decided on), as JSON-ready data recorded on the run; None when no step of
    the rule has a condition."""

    rule: str
    target: Target
    steps: tuple[StepPlan, ...]
    guards: GuardSpec
    verify_within_s: float | None
    # Occurrences of this (rule, target) inside the widest `repeated` window, this one included.
    occurrence: int = 1
    settle_s: float | None = None
    decision: Mapping[str, Any] | None = None
    announce: Announce | None = None
    # The rule's on_resolved steps as of now, kept with the run (``runs.on_resolved``): what
    # the run undoes when its alert resolves, whatever the rules say by then.
    on_resolved: tuple[StepPlan, ...] = ()

    @property
    def occurrence_capped(self) -> bool:
        """True when ``occurrence`` is where the count stopped (the rule's highest
        ``repeated.times`` earlier occurrences reached, ``receiver.repetitions``): the
        occurrence is "N or later", not N. Recorded as the decision's ``occurrence_capped``."""
        return bool(self.decision and self.decision.get("occurrence_capped"))


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A run whose alert resolved and, within its settle period, fired again on the same
    target: its verification has failed (recurred). ``event_id`` is the firing that recurred."""

    run_id: str
    rule: str
    event_id: int


@dataclass(frozen=True, slots=True)
class ResolvePlan:
    """Close an open run of the resolved episode and run its on_resolved ``steps``.

    ``inferred_from``: the run is of an earlier episode whose resolution never came; the event
    (of a later episode, whose ``startsAt`` this is) proves it ended by then: it is closed as
    resolved at that time, saying so. ``deferred``: the alert fires again: the run is closed,
    its undo waits for the alert's next resolution (``undo_deferred``). ``carried``: that
    resolution came: a run closed earlier whose deferred undo runs now."""

    run_id: str
    rule: str
    target: Target
    steps: tuple[StepPlan, ...]
    inferred_from: str | None = None
    deferred: bool = False
    carried: bool = False
    withdraw: bool = False  # its held undo withdrawn, deferred: it fires (withdraw_undo)


@dataclass(frozen=True, slots=True)
class Skip:
    """Why an event, or one rule for it, led to nothing. Recorded for review."""

    reason: str
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    event_id: int
    runs: tuple[RunPlan, ...] = ()
    resolves: tuple[ResolvePlan, ...] = ()
    skips: tuple[Skip, ...] = ()
    recurrences: tuple[Recurrence, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.runs and not self.resolves and not self.recurrences


class RunOutcome(StrEnum):
    PENDING = "pending"  # created, not yet through the guards
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    # Steps done, waiting for the alert to resolve (and, with a settle period, to stay resolved).
    VERIFYING = "verifying"
    VERIFIED = "verified"  # the alert resolved in time (and did not recur while settling)
    SUCCEEDED = "succeeded"  # steps done, nothing verified (or resolved_before_action)
    DRY_RUN = "dry_run"
    REFUSED = "refused"  # a guard or a precondition said no
    # A step failed, or verification failed (``verify_result``: not_resolved or recurred).
    FAILED = "failed"
    REJECTED = "rejected"  # an approver rejected a step (the run's error says who and why)
    EXPIRED = "expired"  # a step's approval was not decided before it expired
    CANCELLED = "cancelled"  # the alert resolved while a step waited for its approval


class VerifyResult(StrEnum):
    """How a run's verification ended (``runs.verify_result``; None while undecided)."""

    VERIFIED = "verified"  # resolved within verify.resolved_within (and stayed so: settle)
    NOT_RESOLVED = "not_resolved"  # still firing at the deadline
    RECURRED = "recurred"  # resolved, then fired again on the same target while settling
    # Resolved before the run's first step acted (the alert ended by itself while its firing
    # waited): the steps cannot have fixed it; the run ``succeeded``, the rule is not credited.
    RESOLVED_BEFORE_ACTION = "resolved_before_action"


@dataclass(frozen=True, slots=True)
class PriorRun:
    """A run the store already holds, as the engine needs to see it."""

    run_id: str
    rule: str
    target: Target
    fingerprint: str
    starts_at: str
    created_at: datetime
    outcome: RunOutcome
    closed: bool = False
    refire: int = 0
    # The alert event that created the run; None when unknown (taken as earlier than any event).
    event_id: int | None = None
    # True when at least one of its own steps changed something (ok, or simulated in a rule
    # test) or may have (interrupted, or still started: a worker stopped while it acted; failed
    # after its request may have reached its system, StepRecord.may_have_acted): only such a
    # run has anything for its on_resolved steps to undo.
    changed: bool = False
    alertname: str = ""
    # Its alert resolved and it waits out its settle period until then (still verifying).
    settle_until: datetime | None = None
    # The on_resolved steps it was planned with (read for episode and other runs); None for a
    # run created before they were kept with it: its rule's, as loaded now, stand in.
    on_resolved: tuple[StepPlan, ...] | None = None
    undo_held: bool = False  # closed; an on_resolved step waits for approval (other runs)
    # Why its kept on_resolved steps cannot be read (edited since: store.undo_plans.kept_undo);
    # on_resolved is then (): it is closed undoing nothing, never its rule's steps (a guess).
    on_resolved_unreadable: str = ""

    @property
    def occurrence(self) -> tuple[str, str, int]:
        return (self.fingerprint, self.starts_at, self.refire)


@dataclass(frozen=True, slots=True)
class History:
    """What the engine may know about the past; the worker reads it from the store."""

    # Runs of the same occurrence (fingerprint, starts_at, refire), any rule.
    episode_runs: tuple[PriorRun, ...] = ()
    # Runs created within the widest `repeated` window of any rule, for the targets in play.
    recent_runs: tuple[PriorRun, ...] = ()
    # True when a resolved event of this occurrence is stored: a later firing of it is late.
    episode_resolved: bool = False
    # Verifying runs, of the (rule, target) pairs in play, whose alert resolved and that wait
    # out their settle period: a new firing of the same alert on the target fails them.
    settling_runs: tuple[PriorRun, ...] = ()
    # The alert's runs of other occurrences: open, or closed with their undo deferred or held.
    other_runs: tuple[PriorRun, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


# How long a step waits for a system it cannot reach before it fails (a run's or an
# escalation's step; an undo's), by default (receiver.pipeline.unreachable, config ``actions.``).
UNREACHABLE_RETRY_S = 300.0
UNDO_UNREACHABLE_RETRY_S = 30 * 60.0


class VerdictKind(StrEnum):
    CONTINUE = "continue"  # on to the next stage
    STOP = "stop"  # the run is over, with ``outcome``
    PARK = "park"  # the run waits (for an approval, a guard) and is taken up again by a job
    RETRY = "retry"  # nothing was decided: try the whole job again after ``after_s``


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one pipeline stage says about a run. Build with the class methods."""

    kind: VerdictKind
    outcome: RunOutcome | None = None
    # RETRY: seconds until the job is tried again; PARK: seconds until the run is resumed by
    # itself (a guard's retry_at), None when something else resumes it (an approval decision).
    after_s: float | None = None
    reason: str = ""
    # RETRY: the latest it may be tried again, in seconds, whatever the worker's backoff (a
    # step's wait for its system ends at its bound, receiver.pipeline.unreachable); None: any.
    within_s: float | None = None

    @classmethod
    def next(cls) -> Verdict:
        return _NEXT

    @classmethod
    def stop(cls, outcome: RunOutcome, reason: str = "") -> Verdict:
        return cls(VerdictKind.STOP, outcome=outcome, reason=reason)

    @classmethod
    def park(cls, outcome: RunOutcome, reason: str, after_s: float | None = None) -> Verdict:
        return cls(VerdictKind.PARK, outcome=outcome, after_s=after_s, reason=reason)

    @classmethod
    def retry(cls, after_s: float, reason: str, within_s: float | None = None) -> Verdict:
        within = None if within_s is None else max(0.0, within_s)
        return cls(VerdictKind.RETRY, after_s=max(0.0, after_s), reason=reason, within_s=within)


_NEXT = Verdict(VerdictKind.CONTINUE)


@dataclass(frozen=True, slots=True)
class Disposition:
    """The verdict on one claimed job (an alert event or a run resumption): finished, or try
    again after ``retry_after_s`` with ``error`` recorded on the job, and at the latest
    after ``retry_within_s`` (None: whenever the worker's backoff says)."""

    retry_after_s: float | None = None
    error: str | None = None
    retry_within_s: float | None = None
    # Done, and completed in the store already by the pipeline's last write (one transaction
    # per event): the worker must not complete it again.
    settled: bool = False

    @property
    def is_done(self) -> bool:
        return self.retry_after_s is None

    @classmethod
    def done(cls, *, settled: bool = False) -> Disposition:
        return _SETTLED if settled else _DONE

    def delay_s(self, backoff_s: float) -> float:
        """Seconds until a retried job is due: what it asked or the worker's ``backoff_s``,
        the longer, but no later than ``retry_within_s`` (a step waiting for its system fails
        at its bound, not up to a backoff, 5 minutes, after it)."""
        delay = max(self.retry_after_s or 0.0, backoff_s)
        return delay if self.retry_within_s is None else min(delay, self.retry_within_s)

    @classmethod
    def retry(
        cls, after_s: float, error: str | None = None, within_s: float | None = None
    ) -> Disposition:
        within = None if within_s is None else max(0.0, within_s)
        return cls(retry_after_s=max(0.0, after_s), error=error, retry_within_s=within)


_DONE = Disposition()
_SETTLED = Disposition(settled=True)
