"""What the stages share: their dependencies, the run they work on, and their one signature.

A stage is a small object ``async (ctx) -> Verdict`` (the shape of Alertmanager's notify stages,
``notify/notify.go``, and of structlog's processors): it reads and fills the ``RunContext`` and
says whether the run goes on, stops with an outcome, parks, or must be retried. Adding a stage
is adding an item to a list in ``pipeline.runner``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from receiver.approvals.desk import ApprovalDesk
from receiver.guards.policy import Admission, AdmissionRequest, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import (
    UNDO_UNREACHABLE_RETRY_S,
    UNREACHABLE_RETRY_S,
    AlertEvent,
    Announce,
    GuardSpec,
    NamespacePolicy,
    ResolvePlan,
    StepPlan,
    Verdict,
)
from receiver.priority import Priority
from receiver.refusal_digest import REFUSAL_DIGEST_S
from receiver.store import STARTED, EventLease, LeaseFence, RunRecord, StepRecord, Store
from receiver.store.event_rows import UnreadableEvent, event_from_row
from receiver.store.phase_stop import STOPPERS
from receiver.telemetry import Metrics
from receiver.unreadable import unreadable_text
from remediations.base import Clients, Outcome, Registry, Result
from remediations.targets import Target

__all__ = [
    "ESCALATE_GUARDS",
    "RESOLVE_GUARDS",
    "STEP_AWAITING_APPROVAL",
    "STEP_OUTCOME_FACT",
    "STEP_PENDING",
    "STEP_STARTED",
    "STOPS_RUN",
    "WORKER_STOPPED",
    "Deps",
    "FactSource",
    "PipelineSettings",
    "RunContext",
    "Stage",
    "possible_change",
    "read_origin",
    "record_step",
    "release_lock",
    "release_when_done",
    "stopped_at",
]

# Step outcomes beyond the action outcomes: planned but not yet run, and held for a human.
STEP_PENDING = "pending"
STEP_AWAITING_APPROVAL = "awaiting_approval"
# Acting right now, or was when its worker stopped: marked before an action that must not run
# twice acts (``Store.start_step``; pipeline.steps). Taken up again, such a step is recorded
# ``interrupted``, never run again.
STEP_STARTED = STARTED

# Step outcomes of a step a worker stopped in: it may have acted, in part or in full, or not at
# all. Its run counts as one that may have changed something: its budget slot is kept
# (budget.py), its on_resolved steps are planned (store/history.py) and say so (resolve.py).
WORKER_STOPPED: frozenset[str] = frozenset({Outcome.INTERRUPTED, STEP_STARTED})


def possible_change(outcome: str, may_have_acted: bool) -> bool:
    """Whether a step that did not end ``ok`` may have acted all the same: one a worker stopped
    in (``WORKER_STOPPED``), or a ``failed`` one whose failure came after its request may have
    reached its system (``may_have_acted``: a POST sent and never answered, a signal whose
    answer was lost; ``remediations.base.ActionError.may_have_acted``). Its run counts as one
    that may have changed something: its budget slot is kept (budget.py, where any failed step
    counts), its on_resolved steps are planned (store/history.py) and say why (resolve.py).
    A failed step known not to have acted (a refused connection, a 4xx answer, an error before
    any request) is no possible change."""
    return outcome in WORKER_STOPPED or (outcome == Outcome.FAILED and may_have_acted)


# Step outcomes that stop the steps after them and end the run (failed, refused) or the
# follow-up: a failed or refused step, and one a worker stopped in (``interrupted``). The
# store's ``STOPPERS``, which ends a follow-up's later steps by the same rule.
STOPS_RUN = frozenset(Outcome(outcome) for outcome in STOPPERS)


def stopped_at(steps: Iterable[StepRecord], phase: str) -> int | None:
    """The index of the first step of ``phase`` ('run'; a follow-up's, 'resolve': the undo,
    'on_failed': the escalation) that stopped it (``STOPS_RUN``), or None. The steps after it
    never run: the record stage ends them ``not_run`` (with the run's outcome;
    ``Store.stop_phase`` for a follow-up), and a pass that takes the run or the follow-up up
    again leaves them out, in case a worker died before they were ended."""
    return min((s.idx for s in steps if s.phase == phase and s.outcome in STOPS_RUN), default=None)


# The guards an on_resolved step passes: it undoes a change, so cooldown, rate, budget and the
# breaker (which limit new changes) do not apply; a pause, the namespace policy and another
# run holding the target do.
RESOLVE_GUARDS = ("pause", "namespace", "lock")

# The guards an on_failed step passes: it is the same run going on after its verification
# failed, so the rule's cooldown and rate (already taken by this run) and its breaker (which
# this very failure may just have opened) do not apply; a pause, the namespace policy, the
# budget of disruptive changes and another run holding the target do.
ESCALATE_GUARDS = ("pause", "namespace", "budget", "lock")

# The fact a simulated step asks for (``f"{STEP_OUTCOME_FACT}:{action}"``): how the step of that
# action on the target ends, ``{"outcome": ..., "message": ...}``, when a rule test scripts it.
STEP_OUTCOME_FACT = "step_outcome"


class FactSource(Protocol):
    """Live state stated rather than read: (kind of fact, target) -> value. A rule test
    (``receiver.ruletest``) passes its fixtures as ``Deps.fixtures``: the fact reader
    (``pipeline.facts``) then answers conditions from them instead of its probes, and a
    simulated step asks them how it ends (``STEP_OUTCOME_FACT``)."""

    async def get(self, kind: str, target: Target) -> Any | None:
        """The value of fact ``kind`` about ``target``; None when none is stated."""
        ...


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """``dry_run``: the service's mode (Kubernetes writes use server-side dry-run).
    ``min_history_s``: how far back the history reaches when no rule asks for more.
    ``guards_down_retry_s``: how soon a job is tried again when Redis cannot be asked.
    ``resolve_retry_s``: the longest an on_resolved step held by a guard (pause, target lock)
    waits before it is tried again (sooner when the guard says when it may pass); also how
    long after a pass running on_resolved steps stopped beating its safety-net job comes due
    (pipeline.holdback).
    ``lock_wait_s``: how soon a run that found its target locked by another run asks again.
    ``simulate``: a rule test (``remediator test``): no action is called; every system counts
    as configured (so approvals gate as in production), and each step is recorded
    ``simulated`` with what it would do, or ends as the test's fixtures script it.
    ``refusal_digest_s``: the window (seconds) of a rule's refusal digest to a channel: the
    first refusal is sent, the others within the window are folded into one digest sent when
    it ends (``pipeline.digest``); 0: every refusal is sent on its own.
    ``unreachable_retry_s``, ``undo_unreachable_retry_s``: how long a step (a run's or an
    escalation's; an on_resolved one) waits for a system it cannot reach before it is
    recorded failed (``pipeline.unreachable``)."""

    dry_run: bool
    policy: NamespacePolicy
    min_history_s: float = 3600.0
    guards_down_retry_s: float = 5.0
    resolve_retry_s: float = 60.0
    lock_wait_s: float = 5.0
    simulate: bool = False
    refusal_digest_s: float = REFUSAL_DIGEST_S
    unreachable_retry_s: float = UNREACHABLE_RETRY_S
    undo_unreachable_retry_s: float = UNDO_UNREACHABLE_RETRY_S


@dataclass(frozen=True, slots=True)
class Deps:
    """Everything a stage may use, passed in: no stage reaches for a global."""

    store: Store
    guards: Guards
    registry: Registry
    clients: Clients
    settings: PipelineSettings
    metrics: Metrics
    clock: Callable[[], datetime]
    # Approvals of risky steps; None: such steps park their run and nothing asks anyone.
    approvals: ApprovalDesk | None = None
    # In a simulation, the live state the test states; None: facts are read by the probes.
    fixtures: FactSource | None = None
    # Shared with the worker: an event's calls to the store and the guards wait their turn
    # while an express event works (receiver.priority).
    priority: Priority = field(default_factory=Priority)
    # Set when the service begins to stop (``Pipeline.wind_down``): no run is admitted and no
    # step begins after it (``stages.Admit``, ``follow_up.AdmitResolve``, ``execute.Execute``).
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def not_admitted_at_stop(self, ctx: RunContext) -> Verdict | None:
        """The verdict of a run about to ask its guards while the service stops (``stopping``):
        its event or job handed back at once, no guard asked, nothing stored, for the next
        worker to admit it; None when the service is not stopping. An admission now would
        take a rate or budget slot, a cooldown and the target lock for a run whose first step
        would not begin here (``execute.Execute``)."""
        if not self.stopping.is_set():
            return None
        ctx.log.info("the service is stopping; the run is not admitted", phase=ctx.phase)
        return Verdict.retry(
            0.0,
            f"the service stopped before the {ctx.phase} steps were admitted: the next worker "
            "admits them",
        )


@dataclass(slots=True)
class RunContext:
    """One run on its way through the stages.

    ``steps`` are the steps of ``phase`` ('run', 'resolve' or 'on_failed') that have not
    finished yet, in order. The stages fill in the rest: the run id once recorded, the
    admission, the steps the approval stage lets through (``runnable``) and the first one it
    holds (``awaiting``), and each step's result.
    """

    rule: str
    target: Target
    steps: tuple[StepPlan, ...]
    guards: GuardSpec
    verify_within_s: float | None
    log: Any
    phase: str = "run"
    run_id: str | None = None
    # The event at hand: the one that planned this run, or the resolved one closing it; None
    # when a job takes the run up again.
    event: AlertEvent | None = None
    # The event that created a run taken up again (read back from the store by
    # runner.take_up); None when retention pruned it, or when it cannot be read:
    origin: AlertEvent | None = None
    # why not (``read_origin``: its labels or annotations edited since). Every step this pass
    # takes up then fails without acting: none writes about, or previews for, a guessed alert.
    origin_unreadable: str = ""
    occurrence: int = 1
    settle_s: float | None = None
    # Why these steps (the engine's decision on the steps' conditions), recorded with the run.
    decision: Mapping[str, Any] | None = None
    # The rule's ``notify:``; None: its runs are not announced.
    announce: Announce | None = None
    # Resolve phase: the engine's plan for closing the run, when it says more than "its alert
    # resolved" (closed on a later episode's evidence, its undo deferred or carried out now:
    # ``ResolvePlan``); None otherwise.
    resolving: ResolvePlan | None = None
    # A new run's on_resolved steps, kept with it when it is stored (``RunPlan.on_resolved``).
    undo: tuple[StepPlan, ...] = ()
    # Set when this pass asked for an approval (a new one): the run's park is then news.
    requested_approval: bool = False
    # What the store held when the run was taken up again (crash recovery, a job).
    prior: RunRecord | None = None
    # A new run not stored yet (``run_id`` is already its id): stores it, pending; refused when
    # given the guard's ``refusal``; or admitted and running when given its ``admitted`` data
    # (``Store.create_run``); None once stored (stages.py).
    create: Callable[..., Awaitable[str | None]] | None = None
    # The lease of the event at hand when this run is the last thing its event does: a new
    # run refused at once is then stored, announced and its event completed in one statement
    # (``completes.completed`` says it was), unless a message of the refusal is to be sent
    # (the admit stage drops it then). None: the worker completes the event.
    completes: EventLease | None = None
    # The claim of the event or job this pass works for: the run's writes are fenced by it
    # (receiver.store.fence), so a late copy of one, landing after another worker claimed the
    # item, writes nothing and raises LeaseLost. None: unfenced (a test's direct call).
    lease: LeaseFence | None = None
    admission: Admission | None = None
    runnable: tuple[StepPlan, ...] = ()
    awaiting: StepPlan | None = None
    results: list[tuple[StepPlan, Result]] = field(default_factory=list)
    # What earlier steps of this run changed, by action: {"before": {...}, "after": {...}} of
    # the last step of that action that changed something (e.g. the replica counts
    # kubernetes.scale went from and to), for steps that undo it (``ActionContext.recorded``).
    recorded: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    # (action, outcome) of the steps that finished before this pass (a resumed run).
    finished: list[tuple[str, str]] = field(default_factory=list)
    # The run-phase step of an earlier pass that stopped the run (``STOPS_RUN``) when that
    # pass's worker died before the run's outcome was written: the steps after it are left
    # out (``runner.context_of``) and the record stage ends the run on it.
    stopped: StepRecord | None = None
    # Said on every step this pass records (``record_step``), after the step's own message: an
    # on_resolved step of a run whose own step may not have acted (resolve.Close).
    caveat: str = ""
    # Steps an engineer approved whose plan still holds: step index -> the preconditions of
    # the approved preview, which the action checks again as it runs.
    approved: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    # A plan computed this pass for the held step (step index -> (plan, hash)), so asking for
    # its approval does not read live state twice.
    previews: dict[int, tuple[Mapping[str, Any], str]] = field(default_factory=dict)
    # Run when the pipeline ends, whatever the verdict (e.g. releasing the target lock).
    cleanups: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    # The "started" announcement still on its way while the steps run (Announcer.started).
    announcing: asyncio.Task[None] | None = None
    # The target lock's release this pass registered (``release_when_done``), for the stage
    # whose write ends the pass to give the lock back first (``release_lock``).
    lock_release: Callable[[], Awaitable[bool]] | None = None

    @property
    def alert(self) -> AlertEvent | None:
        """The alert behind the run, for what its steps and messages say about it: the event
        at hand, else the one that created the run."""
        return self.event if self.event is not None else self.origin

    def bind(self, **values: Any) -> None:
        self.log = self.log.bind(**values)

    def remember(self, action: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """Note what a step of ``action`` changed, for later steps that undo it."""
        self.recorded[action] = {"before": dict(before), "after": dict(after)}


class Stage(Protocol):
    """One stage of the run pipeline. ``name`` shows in logs and tests."""

    name: str

    async def __call__(self, ctx: RunContext, /) -> Verdict: ...


async def record_step(
    deps: Deps, ctx: RunContext, step: StepPlan, outcome: str, message: str, **detail: Any
) -> None:
    """Record ``step`` of ``ctx``'s run, in ``ctx.phase``, as ``outcome`` with ``message``.

    ``detail``: the rest of ``Store.record_step`` (before, after, attempts, started_at,
    finished_at) for a step that ran. The run must have been recorded (``ctx.run_id``).
    ``ctx.caveat``, when set, follows the message.
    """
    assert ctx.run_id is not None
    if ctx.caveat:
        message = f"{message}; {ctx.caveat}" if message else ctx.caveat
    await deps.store.record_step(
        ctx.run_id,
        lease=ctx.lease,
        idx=step.index,
        phase=ctx.phase,
        action=step.action,
        outcome=outcome,
        params=step.params,
        needs_approval=step.needs_approval,
        message=message,
        **detail,
    )


async def read_origin(store: Store, ctx: RunContext, event_id: int | None) -> None:
    """Read back the alert event ``event_id`` that created ``ctx``'s run, taken up again, as
    ``ctx.origin`` (None: no event, or retention pruned it). One whose labels or annotations
    cannot be read back (an edit of the table: ``UnreadableEvent``) is said, instead, in
    ``ctx.origin_unreadable`` (``the alert's labels cannot be read: ...``), and logged."""
    if event_id is None:
        return
    row = await store.get_event(event_id)
    if row is None:
        return
    try:
        ctx.origin = event_from_row(row)
    except UnreadableEvent as exc:
        fields = {f"the alert's {name}": why for name, why in exc.fields.items()}
        ctx.origin_unreadable = unreadable_text(fields)
        ctx.log.warning("the run's alert cannot be read; its steps fail", event_id=event_id)


def release_when_done(
    deps: Deps, ctx: RunContext, request: AdmissionRequest, admission: Admission
) -> None:
    """Release what ``admission`` took (the target lock) when the pipeline ends, whatever the
    verdict: a cleanup in ``ctx.cleanups``, also ``ctx.lock_release`` for a stage to release
    it sooner (``release_lock``); Redis is asked until it answers once, whichever comes
    first. Redis unreachable is logged, and the release answers False: the lock stays until
    its TTL (``guards.lock_ttl``) unless a later pass gives it back."""
    released = False

    async def release() -> bool:
        nonlocal released
        if released:
            return True
        try:
            await deps.guards.release(request, admission)
        except GuardUnavailable as exc:
            ctx.log.warning("could not release the target lock", error=str(exc))
            return False
        released = True
        return True

    ctx.lock_release = release
    ctx.cleanups.append(release)


async def release_lock(ctx: RunContext) -> bool:
    """Give back the target lock this pass took, now: before the write that ends the pass
    (a run's outcome). Until that write commits the run can still be taken up again, and the
    pass that takes it up holds the lock and gives it back in turn; released after the write,
    a worker that died between the two left an ended run's lock on its target, which every
    later run there waited out (``guards.lock_ttl``). True when given back, or when the pass
    took no lock; False when Redis could not be asked (the caller does not end the run then:
    a Redis that persists keeps the lock over its restart)."""
    if ctx.lock_release is not None:
        return await ctx.lock_release()
    return True
