"""The stage lists, and the loop that runs one of them over a run.

``Stages.run`` takes a run from its plan to its outcome (an approval is asked for after the
steps before the held one ran); a run taken up again (a retry, a crash, a job) goes through the
same list, each stage skipping what is already done. ``Stages.resolve`` closes a run whose alert
resolved and runs its on_resolved steps through their guards and, for those that need one, an
approval (resolve.py), announcing an undo that did not happen (undo.py). ``Stages.escalate``
runs the on_failed steps of a run whose verification failed (escalate.py): the same approve,
execute and request stages as the run's own steps, behind the follow-up's guards. In each
list those three are one stage (turns.py), taken again past a held step that changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from receiver.model import GuardSpec, RunOutcome, StepPlan, Verdict, VerdictKind
from receiver.pipeline.announce import Announcer
from receiver.pipeline.approve import Approve, RequestApproval
from receiver.pipeline.context import (
    ESCALATE_GUARDS,
    STEP_AWAITING_APPROVAL,
    Deps,
    RunContext,
    Stage,
    read_origin,
    stopped_at,
)
from receiver.pipeline.execute import Execute
from receiver.pipeline.follow_up import AdmitResolve
from receiver.pipeline.holdback import HoldBack
from receiver.pipeline.record import Record, RecordEscalation
from receiver.pipeline.resolve import Close
from receiver.pipeline.stages import Admit, RecordPlan
from receiver.pipeline.steps import StepRunner
from receiver.pipeline.turns import StepTurns
from receiver.pipeline.undo import RecordResolve, UndoNotice
from receiver.rules.model import Rule
from receiver.store import JobKind, RunRecord, StepRecord, Store
from remediations.base import Outcome

__all__ = ["Stages", "context_of", "run_stages", "take_up"]

# Step outcomes after which a step is not run again when its run is taken up again.
FINISHED_STEP = frozenset(o.value for o in Outcome)


class Stages:
    """The stage lists (a run, its resolution, its escalation), built once around the
    service's dependencies."""

    def __init__(self, deps: Deps) -> None:
        runner = StepRunner(deps)
        self.announce = Announcer(deps)
        approve, request = Approve(deps, runner), RequestApproval(deps, runner)
        # An undo that did not happen is told to the rule's channel, once per run.
        notice = UndoNotice(self.announce)
        admit_resolve = AdmitResolve(deps, notice=notice)
        admit_escalation = AdmitResolve(
            deps, only=ESCALATE_GUARDS, job=JobKind.RESUME_RUN, outcome=RunOutcome.FAILED
        )
        # approve -> execute -> request, again past a held step that changes nothing.
        self.run: tuple[Stage, ...] = (
            RecordPlan(deps, runner),
            Admit(deps, self.announce, runner),
            StepTurns(approve, Execute(runner, deps), request),
            Record(deps, self.announce),
        )
        # A pause that comes between a follow-up's steps holds the rest as its admission would.
        self.resolve: tuple[Stage, ...] = (
            Close(deps),
            admit_resolve,
            # Admitted, the steps will run: their safety-net job is kept from coming due meanwhile.
            HoldBack(deps),
            StepTurns(approve, Execute(runner, deps, hold=admit_resolve.refused), request),
            RecordResolve(deps, notice),
        )
        self.escalate: tuple[Stage, ...] = (
            admit_escalation,
            StepTurns(approve, Execute(runner, deps, hold=admit_escalation.refused), request),
            RecordEscalation(deps),
        )


async def run_stages(stages: Sequence[Stage], ctx: RunContext) -> Verdict:
    """Run ``stages`` in order until one says anything but continue; then the cleanups the
    stages registered, whatever happened. Returns the last verdict (continue when every stage
    passed)."""
    verdict = Verdict.next()
    try:
        for stage in stages:
            verdict = await stage(ctx)
            if verdict.kind is not VerdictKind.CONTINUE:
                break
    finally:
        for cleanup in reversed(ctx.cleanups):
            await cleanup()
        ctx.cleanups.clear()
    return verdict


def context_of(run: RunRecord, rule: Rule | None, log: Any) -> RunContext:
    """The context of a stored run, to take it up again: the run-phase steps that have not
    finished (pending, or held for an approval), what the finished ones recorded, and what
    it was planned with. ``rule`` gives the guard spec and the announcements; None when the
    rule is no longer loaded."""
    finished = [s for s in run.steps if s.phase == "run" and s.outcome in FINISHED_STEP]
    # A step that stopped the run stops it however late the run is taken up: its worker may
    # have died before the outcome was written, and the steps after it never run.
    stop = stopped_at(run.steps, "run")
    remaining = plans_of(
        s
        for s in run.steps
        if s.phase == "run"
        and (stop is None or s.idx < stop)
        and (s.outcome not in FINISHED_STEP or s.outcome == STEP_AWAITING_APPROVAL)
    )
    ctx = RunContext(
        rule=run.rule,
        target=run.target,
        steps=remaining,
        guards=rule.guards if rule is not None else GuardSpec(),
        verify_within_s=run.verify_within_s,
        log=log,
        run_id=run.id,
        occurrence=run.occurrence,
        prior=run,
        finished=[(s.action, s.outcome) for s in finished],
        stopped=next((s for s in run.steps if s.phase == "run" and s.idx == stop), None),
        settle_s=run.settle_s,
        decision=run.decision,
        announce=rule.announce if rule is not None else None,
    )
    remember_changes(ctx, run)
    ctx.bind(run_id=run.id, rule=run.rule, target=run.target.key)
    return ctx


def plans_of(steps: Iterable[StepRecord]) -> tuple[StepPlan, ...]:
    """Stored steps as the plans a stage runs: taken up again, they run as first planned."""
    return tuple(s.as_plan() for s in steps)


def remember_changes(ctx: RunContext, run: RunRecord) -> None:
    """``ctx.remember`` what the run-phase steps of ``run`` that ended OK changed, in order
    (the last of an action wins), for the steps that undo it."""
    for step in run.steps:
        if step.phase == "run" and step.outcome == Outcome.OK and step.before:
            ctx.remember(step.action, step.before, step.after or {})


async def take_up(store: Store, run: RunRecord, rule: Rule | None, log: Any) -> RunContext:
    """``context_of`` the stored run, with the alert that created it read back from the store
    (``RunContext.origin``): a step that writes about the alert (notify, http.call) must say
    the same after an approval or a crash as it would have said at once, and an approval's
    preview, which hashes what the step will send, must come out the same. An alert that
    cannot be read (edited since) fails each step taken up, without acting (``read_origin``):
    a run held for its approval then ends ``failed``."""
    ctx = context_of(run, rule, log)
    await read_origin(store, ctx, run.event_id)
    return ctx


# Outcomes from which a run may be taken up again by the run stages.
RESUMABLE = frozenset({RunOutcome.PENDING, RunOutcome.RUNNING, RunOutcome.AWAITING_APPROVAL})
