"""Plain records the store hands out and takes in, and the row -> record converters.

No I/O here: the records are frozen dataclasses, the converters read asyncpg rows (any mapping
of column name to value) and the column lists name what they read. The JSON they are sent in
is ``receiver.store.canonical``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from receiver.alertmanager import ZERO_TIME
from receiver.model import AlertEvent, RunOutcome, Status, StepPlan, Target, VerifyResult
from receiver.store.canonical import audit_data
from receiver.store.event_rows import event_columns, event_from_row
from receiver.store.fence import LeaseFence
from receiver.store.run_ids import run_id_of
from receiver.store.stored_json import OBJECT, decode_columns, decode_object
from receiver.store.stored_times import unreadable_times
from receiver.unreadable import unreadable_text

__all__ = [
    "RUN_COLUMNS",
    "AuditCheck",
    "ClaimedEvent",
    "ClaimedJob",
    "JobKind",
    "NewEvent",
    "Refused",
    "RunRecord",
    "StepRecord",
    "as_utc",
    "event_columns",
    "event_from_row",
    "job_from_row",
    "run_from_row",
    "run_id_of",
    "step_from_row",
]


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One alert of an accepted notification, before it has an id."""

    fingerprint: str
    starts_at: str
    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    ends_at: str = ZERO_TIME
    generator_url: str = ""
    group_key: str = ""
    receiver: str = ""
    # Set when the event needs no worker (see engine.settled_at_intake): stored already done.
    settled_reason: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """The dedupe key without its occurrence: (fingerprint, starts_at, status). The store
        adds ``refire``, which it works out from what it already holds (``store.events``)."""
        return (self.fingerprint, self.starts_at, str(self.status))

    def as_event(
        self, event_id: int, received_at: datetime | None = None, refire: int = 0
    ) -> AlertEvent:
        """The event as the store would hand it out once stored under ``event_id``."""
        return AlertEvent(
            id=event_id,
            fingerprint=self.fingerprint,
            starts_at=self.starts_at,
            status=self.status,
            labels=dict(self.labels),
            annotations=dict(self.annotations),
            ends_at=self.ends_at,
            generator_url=self.generator_url,
            group_key=self.group_key,
            receiver=self.receiver,
            received_at=received_at,
            refire=refire,
        )


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """An event leased to one worker until ``lease_until``; ``attempts`` counts this claim,
    ``failures`` the attempts that failed before it (a lease that ran out included)."""

    event: AlertEvent
    attempts: int
    lease_until: datetime
    last_error: str | None = None
    failures: int = 0
    # The alert name's lane (md5 of it) and its turn in the claim: (rank within its lane,
    # the lane's order in the walk); rank 0 is an expired lease (receiver.store.claims).
    lane: str = ""
    turn: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True)
class Refused:
    """A guard's refusal as the store records it: the guard, its reason, when it may pass."""

    guard: str
    reason: str
    retry_at: datetime | None

    @property
    def not_run(self) -> str:
        """The message of the run's steps that were not run."""
        return f"not run: the {self.guard} guard refused the run"

    def audit(self) -> dict[str, Any]:
        """The ``run.refused`` audit row's data."""
        return {
            "guard": self.guard,
            "reason": self.reason,
            "retry_at": None if self.retry_at is None else as_utc(self.retry_at).isoformat(),
        }

    def columns(self) -> tuple[str, str, datetime | None, str, str]:
        """guard, reason, retry_at, the steps' message, the audit data (canonical JSON)."""
        return self.guard, self.reason, self.retry_at, self.not_run, audit_data(self.audit())


class JobKind(StrEnum):
    """What a job asks the worker to do with its run (the ``jobs.kind`` CHECK lists the same)."""

    # Take up a parked run again: an approval was decided, or a guard's retry_at has come.
    RESUME_RUN = "resume_run"
    # A VERIFYING run's deadline (or the end of its settle period) has come: fail it unless its
    # alert resolved meanwhile, verify it once it stayed resolved.
    VERIFY_DEADLINE = "verify_deadline"
    # A closed run's on_resolved steps were held by a guard (pause, target lock): try them again.
    RESUME_RESOLVE = "resume_resolve"
    # A pass that ended the run could not give its target lock back (Redis did not answer):
    # give back the tokens the payload names (pipeline/lock_release.py).
    RELEASE_LOCK = "release_lock"
    # An operator's drop ended the run or its approvals: give back the budget slot it never
    # used and tell the approvers, once the drop committed (pipeline/finish_end.py).
    FINISH_END = "finish_end"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job leased to one worker until ``lease_until``; ``attempts`` counts this claim.

    ``run_id`` is the run's uuid as text; ``payload`` is the JSON object given at enqueue
    (merged over repeated enqueues); ``last_error`` is what the previous attempt released with;
    ``failures`` counts the attempts that failed before this claim (a lease that ran out
    included).
    """

    id: int
    kind: JobKind
    run_id: str
    payload: Mapping[str, Any]
    attempts: int
    lease_until: datetime
    last_error: str | None = None
    failures: int = 0
    # The lease's owner, when read as claimed: the fence of the writes made for the job.
    owner: str | None = None

    @property
    def fence(self) -> LeaseFence | None:
        """The claim the job's writes are fenced by (receiver.store.fence); None when it was
        not read as claimed."""
        if self.owner is None:
            return None
        return LeaseFence("job", self.id, self.owner, self.attempts)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of a run as stored: ``phase`` is 'run' or 'resolve', ``idx`` its position
    in the phase; ``before``/``after`` are what the action saw and left (None if not known);
    ``may_have_acted``: a failed step whose request may have reached its system before it
    failed (``remediations.base.Result.may_have_acted``). ``unreadable``: params, before or
    after -> why it cannot be read (edited since: ``stored_json``); params is then ``{}``,
    before/after None."""

    run_id: str
    phase: str
    idx: int
    action: str
    params: Mapping[str, Any]
    needs_approval: bool
    outcome: str
    message: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    may_have_acted: bool = False
    unreadable: Mapping[str, str] = field(default_factory=dict)

    def as_plan(self, *, needs_approval: bool | None = None) -> StepPlan:
        """The step as the stages run it, taken up again: as first planned (``needs_approval``
        overrides the stored one); params that cannot be read are said in its ``unreadable``,
        and the step fails without acting rather than run with none."""
        return StepPlan(
            index=self.idx,
            action=self.action,
            params=self.params or {},
            needs_approval=self.needs_approval if needs_approval is None else needs_approval,
            unreadable=unreadable_text({k: v for k, v in self.unreadable.items() if k == "params"}),
        )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as stored (``id`` is its uuid as text), with its steps when they were asked for.

    Times are timezone-aware; ``verify_within_s`` and ``time_to_resolve_s`` are seconds.
    """

    id: str
    rule: str
    fingerprint: str
    starts_at: str
    alertname: str
    event_id: int | None
    target: Target
    outcome: RunOutcome
    dry_run: bool
    # Occurrences of the (rule, target) in the rule's widest window, this one included; "N or
    # later" when the decision says ``occurrence_capped`` (counting stopped there).
    occurrence: int
    verify_within_s: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    verify_deadline: datetime | None
    resolved_at: datetime | None
    time_to_resolve_s: float | None
    refusal_guard: str | None
    refusal_reason: str | None
    retry_at: datetime | None
    error: str | None
    steps: tuple[StepRecord, ...] = ()
    # Which occurrence of its episode the run is for (0: the alert's first firing).
    refire: int = 0
    # Why these steps (conditions and the live facts they were decided on); None: no `when`.
    decision: Mapping[str, Any] | None = None
    # Verification: the settle period, when settling ends (its alert resolved in time), how
    # it ended, and when its on_failed steps were recorded (verification failed).
    settle_s: float | None = None
    settle_until: datetime | None = None
    verify_result: VerifyResult | None = None
    escalated_at: datetime | None = None
    # Closed with no resolution of its own: the ``startsAt`` of the later episode that proved
    # its episode ended (its resolved_at); ``undo_deferred``: its undo waits for the next one.
    resolution_inferred_from: str | None = None
    undo_deferred: bool = False
    # "decision" -> why it cannot be read (edited since: stored_json); decision is then None.
    # A time edited outside Python's years too (stored_times: it is an UnreadableTime).
    unreadable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """Result of verifying the audit chain. ``first_bad_id`` is None when ``ok``; ``problem``
    says what was found there (edited, inserted, deleted, reordered; receiver.store.chain), or
    ``unsealed`` (rows committed without being chained; ``first_bad_id`` None)."""

    ok: bool
    first_bad_id: int | None
    checked: int
    reason: str = ""
    problem: str = ""

    def __iter__(self) -> Any:  # allows `ok, bad = await store.verify_audit()`
        return iter((self.ok, self.first_bad_id))


# -- rows -> records ----------------------------------------------------------------------


# A step's JSON columns, as this service writes them (stored_json).
_STEP_SHAPES = {"params": OBJECT, "before": OBJECT, "after": OBJECT}

# RUN_COLUMNS' times (a row may hold more: a run read with its steps' s_ columns).
_RUN_TIMES = (
    "created_at", "started_at", "finished_at", "verify_deadline", "resolved_at", "retry_at",
    "settle_until", "escalated_at",
)  # fmt: skip

RUN_COLUMNS = """
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, dry_run, occurrence, verify_within_s, created_at, started_at,
    finished_at, verify_deadline, resolved_at, time_to_resolve_s, refusal_guard, refusal_reason,
    retry_at, error, refire, decision::text AS decision, settle_s, settle_until, verify_result,
    escalated_at, resolution_inferred_from, undo_deferred
"""


def step_from_row(row: Mapping[str, Any]) -> StepRecord:
    """A StepRecord from a steps row whose jsonb columns were selected as text (one that
    cannot be read back is marked in ``unreadable``: ``stored_json.decode_columns``)."""
    data, unreadable = decode_columns(row, _STEP_SHAPES)
    return StepRecord(
        run_id=str(row["run_id"]),
        phase=row["phase"],
        idx=row["idx"],
        action=row["action"],
        params=data["params"] or {},
        needs_approval=row["needs_approval"],
        outcome=row["outcome"],
        message=row["message"],
        before=data["before"],
        after=data["after"],
        attempts=row["attempts"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        may_have_acted=row["may_have_acted"],
        unreadable=unreadable,
    )


def run_from_row(row: Mapping[str, Any], steps: Sequence[StepRecord] = ()) -> RunRecord:
    """A RunRecord from a row of ``RUN_COLUMNS``, with the given steps (a decision that
    cannot be read back is None, marked in ``unreadable``: ``stored_json.decode_object``)."""
    decision, why = decode_object("decision", row["decision"])
    unreadable = unreadable_times(row, _RUN_TIMES)
    if why is not None:
        unreadable["decision"] = why
    return RunRecord(
        id=str(row["id"]),
        rule=row["rule"],
        fingerprint=row["fingerprint"],
        starts_at=row["starts_at"],
        alertname=row["alertname"],
        event_id=row["event_id"],
        target=Target(row["target_kind"], row["target_namespace"], row["target_name"]),
        outcome=RunOutcome(row["outcome"]),
        dry_run=row["dry_run"],
        occurrence=row["occurrence"],
        verify_within_s=row["verify_within_s"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        verify_deadline=row["verify_deadline"],
        resolved_at=row["resolved_at"],
        time_to_resolve_s=row["time_to_resolve_s"],
        refusal_guard=row["refusal_guard"],
        refusal_reason=row["refusal_reason"],
        retry_at=row["retry_at"],
        error=row["error"],
        steps=tuple(steps),
        refire=row["refire"],
        decision=decision,
        settle_s=row["settle_s"],
        settle_until=row["settle_until"],
        verify_result=VerifyResult(row["verify_result"]) if row["verify_result"] else None,
        escalated_at=row["escalated_at"],
        resolution_inferred_from=row["resolution_inferred_from"],
        undo_deferred=row["undo_deferred"],
        unreadable=unreadable,
    )


def job_from_row(row: Mapping[str, Any]) -> ClaimedJob:
    """Reads id, kind, run_id and payload (text), attempts, lease_until, last_error, failures,
    and ``lease_owner`` when the row has it (a claim's). A payload that cannot be read back
    is ``{}``: nothing a job does reads it, and raising here failed the whole claim, every
    job of its batch held again and again (``GET /api/v1/jobs`` shows it as stored)."""
    payload, _ = decode_object("payload", row["payload"])
    return ClaimedJob(
        id=row["id"],
        kind=JobKind(row["kind"]),
        run_id=row["run_id"],
        payload=payload or {},
        attempts=row["attempts"],
        lease_until=row["lease_until"],
        last_error=row["last_error"],
        failures=row["failures"],
        owner=row.get("lease_owner"),
    )
