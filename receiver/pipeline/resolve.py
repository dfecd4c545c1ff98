"""The resolve path: close -> admit -> approve -> execute -> request -> record, for a run whose
alert resolved.

``AdmitResolve`` also admits the on_failed steps of a failed verification (``Stages.escalate``,
with ``ESCALATE_GUARDS``): both are follow-ups of a run, held by a guard rather than refused.

``Close`` stamps the run resolved and hands its pending on_resolved steps on; ``AdmitResolve`` puts
them through the guards that still apply to undoing a change (``RESOLVE_GUARDS``: pause, namespace
policy, target lock); ``Approve`` and ``RequestApproval`` (approve.py) hold a step that needs an
engineer's approval (``approval: required``, or a high-risk action) as they hold a run's own step,
and ``Execute`` (stages.py) runs the others before it; ``RecordResolve`` (undo.py) parks the held
one (``awaiting_approval``) until its approval is decided or expires, and ends and announces an undo
that stopped (a step refused, failed or interrupted: the steps after it ``not_run``). The engine
plans on_resolved steps only for runs whose steps changed something, so a refused, failed, dry-run
or held run is closed and nothing is undone (the resolved event's ``skips`` say so). A run one of
whose steps a worker stopped in (``interrupted``, or still ``started``), or failed after its request
may have reached its system (``failed`` with ``may_have_acted``: a POST sent and never answered),
may have changed something (``context.possible_change``): its on_resolved steps are planned, pass
the same guards, and each record of them says that the change it undoes may not have happened
(``RunContext.caveat``). A failed step known not to have acted (a refused connection, a 4xx answer)
changed nothing.

A run of an earlier episode whose resolution never came is closed the same way when a later episode
of its alert arrives (``receiver.episodes``; ``ResolvePlan.inferred_from``): by its firing with the
undo deferred (``undo_deferred``: the alert fires again), by its resolution with the undo at once; a
deferred undo is carried out when the alert next resolves (``ResolvePlan.carried``:
``Store.carry_undo`` records the steps, with a ``resume_resolve`` job that finishes them should this
pass stop; only the pass whose carry wrote them runs them, one that finds them carried leaves them
to that carry's job). A firing also withdraws a closed run's undo that waits for its approval
(``ResolvePlan.withdraw``); any take-up of a step not started yet after the alert fired again
(approved, or held by a guard) withdraws it (pipeline.refired): deferred.

A step the guards hold is not lost: it stays ``pending`` with the refusal in its message, and a
``resume_resolve`` job takes it up again (withdrawn if its alert fired again meanwhile) when the
guard says it may pass (a pause's end, the lock's expiry), or after ``resolve_retry_s`` at the
latest. A namespace refusal will not pass by waiting: the steps are recorded ``refused``, any
other not done yet (one held for its approval) ``not_run`` and its approval cancelled
(``Store.end_phase``), the undo announced as not done (``undo.UndoNotice``). Redis unreachable
changes nothing, retries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.alertmanager import parse_rfc3339
from receiver.guards.policy import AdmissionRequest, GuardUnavailable, Refusal
from receiver.model import (
    AlertEvent,
    Announce,
    GuardSpec,
    RunOutcome,
    Verdict,
    VerifyResult,
)
from receiver.pipeline.budget import BudgetRefund
from receiver.pipeline.context import (
    RESOLVE_GUARDS,
    STEP_AWAITING_APPROVAL,
    STEP_PENDING,
    STEP_STARTED,
    Deps,
    RunContext,
    read_origin,
    record_step,
    release_when_done,
    stopped_at,
)
from receiver.pipeline.refired import withdrawn_on_take_up
from receiver.pipeline.undo import StoppedUndo, UndoNotice, caveat
from receiver.store import JobKind, RunRecord, Store
from remediations.base import Outcome

__all__ = [
    "AdmitResolve",
    "Close",
    "resolved_at",
    "resolving_context",
    "taken_up_resolving",
]

# Refusals that waiting cannot lift: the steps are refused, not held.
_FINAL_GUARDS = frozenset({"namespace"})


class Close:
    """The alert resolved: stamp the run closed and take up its pending on_resolved steps.

    The steps are recorded before the run is closed: a crash in between leaves pending resolve
    steps that the retried event (or a ``resume_resolve`` job) finishes, instead of losing them.
    A run closed earlier is not closed again; only its pending steps run. ``ctx.resolving``
    says how: closed on a later episode's evidence (resolved at its startsAt), its steps
    deferred (not recorded: the engine plans them again, from the steps kept with the run,
    when the alert next resolves), or a deferred undo carried out now, numbered after the
    run's steps as any undo is (``Store.carry_undo``, ``Store.record_undo``; carried by
    another pass already, none is taken up here: that carry's job runs them), or a held undo
    withdrawn because the alert fires again (``Store.withdraw_undo``: deferred, its approval
    cancelled and announced)."""

    name = "close"

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def __call__(self, ctx: RunContext) -> Verdict:
        store = self._deps.store
        assert ctx.run_id is not None
        ctx.bind(run_id=ctx.run_id, rule=ctx.rule, target=ctx.target.key)
        outcome: str | None = None
        take_up = True
        plan = ctx.resolving
        if ctx.event is not None and plan is not None and plan.withdraw:
            # The alert fires again while the run's undo waits for its approval: withdrawn,
            # under the run's row lock, and carried to the next resolution.
            withdrawn = await store.withdraw_undo(ctx.run_id, event_id=ctx.event.id)
            if withdrawn is not None:
                ctx.log.info("held undo withdrawn: the alert fired again", approvals=len(withdrawn))
                if self._deps.approvals is not None:
                    await self._deps.approvals.withdrawn(withdrawn)
        elif ctx.event is not None and plan is not None and plan.carried:
            # Closed earlier by a later episode; the alert has now resolved: its undo is due.
            # Carried by another pass (a withdrawal's, a first try of this event), its steps
            # are that carry's job's to run: taken up here too, both would run them at once.
            take_up = await store.carry_undo(
                ctx.run_id,
                ctx.steps,
                event_id=ctx.event.id,
                retry_s=self._deps.settings.resolve_retry_s,
            )
            if take_up:
                ctx.log.info("deferred undo taken up: the alert resolved", steps=len(ctx.steps))
        elif ctx.event is not None:
            deferred = plan is not None and plan.deferred
            if not deferred:
                await store.record_undo(ctx.run_id, ctx.steps)
            inferred = plan.inferred_from if plan is not None else None
            outcome = await store.close_run(
                ctx.run_id,
                resolved_at(ctx.event) if inferred is None else _time(inferred),
                inferred_from=inferred,
                defer_undo=deferred and bool(ctx.steps),
            )
            if outcome is not None:
                ctx.log.info(
                    "run closed: alert resolved"
                    if inferred is None
                    else "run closed: a later episode of its alert began",
                    ends_at=ctx.event.ends_at if inferred is None else inferred,
                    outcome=outcome,
                    undo_deferred=deferred and bool(ctx.steps),
                )
            if outcome == RunOutcome.VERIFIED:
                self._deps.metrics.run_finished(ctx.rule, RunOutcome.VERIFIED)
                self._deps.metrics.verification_ended(ctx.rule, VerifyResult.VERIFIED)
        if self._deps.approvals is not None:
            # A step still waiting for its approval is no longer wanted (idempotent); not an
            # on_resolved step's: the resolution is what it waits on.
            await self._deps.approvals.cancel(ctx.run_id)
        run = await store.get_run(ctx.run_id)
        if run is None:
            return Verdict.stop(RunOutcome.VERIFIED, "run no longer exists")
        if run.outcome is RunOutcome.PENDING and run.started_at is None:
            # Never admitted (it waited for the target lock, or Redis): nothing ran, the alert is
            # over; it ends here, if still pending (a job may have admitted it since the read).
            # One admitted before (approved) is its job's (pipeline.jobs).
            if await store.set_run_outcome(
                run.id,
                RunOutcome.CANCELLED,
                error="the alert resolved before the run was admitted; nothing ran",
                lease=ctx.lease,
                expect=RunOutcome.PENDING,
            ):
                self._deps.metrics.run_finished(ctx.rule, RunOutcome.CANCELLED)
            run = await store.get_run(ctx.run_id) or run
        if outcome is not None:
            self._measure(run)
        ctx.prior = run
        ctx.caveat = caveat(run)
        if ctx.caveat:
            ctx.log.warning("undoing a change that may not have happened", caveat=ctx.caveat)
        for step in run.steps:
            # What the run's own steps changed: an on_resolved step undoes that, and only that.
            if step.phase == "run" and step.outcome == Outcome.OK and step.before:
                ctx.remember(step.action, step.before, step.after or {})
        # Numbered before this change, from 0 like the rule's list, an on_resolved step may
        # share its index with a run step, and so that step's approval: it runs as it was
        # planned then, without one (``Verification.record_undo`` numbers them apart now).
        shared = {s.idx for s in run.steps if s.phase != "resolve"}
        stop = stopped_at(run.steps, "resolve")
        ctx.steps = ctx.runnable = tuple(
            s.as_plan(needs_approval=s.needs_approval and s.idx not in shared)
            for s in sorted(run.steps, key=lambda s: s.idx)
            # A started one too: its worker stopped in it; the step runner records it
            # interrupted rather than undoing a second time. A held one: the approve stage
            # lets it through once approved. None after one that stopped the undo: it ended.
            if take_up
            and s.phase == "resolve"
            and s.outcome in _OPEN
            and (stop is None or s.idx < stop)
        )
        return Verdict.next()

    def _measure(self, run: RunRecord) -> None:
        """The time to resolve of a run closed just now, when its steps ran."""
        if run.time_to_resolve_s is not None and run.outcome in _ACTED:
            self._deps.metrics.run_resolved(run.rule, run.time_to_resolve_s)


# On_resolved steps still to settle: planned, held for an approval, or started by a worker
# that stopped (the step runner records that one interrupted, without acting).
_OPEN = (STEP_PENDING, STEP_AWAITING_APPROVAL, STEP_STARTED)


# Outcomes of runs whose steps ran: their time to resolve says how the remediation did.
_ACTED = frozenset(
    {RunOutcome.VERIFIED, RunOutcome.VERIFYING, RunOutcome.SUCCEEDED, RunOutcome.FAILED}
)


class AdmitResolve:
    """admit (resolve path, and the escalation of a failed verification): the guards that
    apply to a follow-up of a run (``only``: RESOLVE_GUARDS, or ESCALATE_GUARDS) for the steps
    in ``ctx.runnable``.

    Nothing to run passes at once. Admitted: the lock is held until the pipeline ends; then
    on_resolved steps taken up again after their alert fired again are withdrawn, not run
    (``withdrawn_on_take_up``). Refused: recorded on each step (and audited); held steps get a
    ``job`` that tries them again; refused for good (the namespace policy), the follow-up ends
    whole (``Store.end_phase``: a step held for its approval too, its approval cancelled and
    the approver told), a budget slot it drew of its own comes back when none of its steps
    acted (``BudgetRefund.follow_up_refused``), and the first refused step is told to
    ``notice`` (the undo's announcement; None for an escalation)."""

    name = "admit"

    def __init__(
        self,
        deps: Deps,
        *,
        only: tuple[str, ...] = RESOLVE_GUARDS,
        job: JobKind = JobKind.RESUME_RESOLVE,
        outcome: RunOutcome = RunOutcome.VERIFIED,
        notice: UndoNotice | None = None,
    ) -> None:
        self._deps = deps
        self._only = only
        self._job = job
        self._notice = notice
        # The run's outcome as the verdict reports it (a follow-up never changes it).
        self._outcome = outcome

    async def __call__(self, ctx: RunContext) -> Verdict:
        deps = self._deps
        assert ctx.run_id is not None
        if not ctx.runnable:
            return Verdict.next()
        request = AdmissionRequest(
            run_id=ctx.run_id,
            rule=ctx.rule,
            target=ctx.target,
            # Counts only where the budget is asked (an escalation may make a new change).
            disruptive=any(deps.registry.get(s.action).disruptive for s in ctx.runnable),
            spec=GuardSpec(),
        )
        if (handed_back := deps.not_admitted_at_stop(ctx)) is not None:
            return handed_back
        try:
            admission = await deps.guards.admit(request, only=self._only)
        except GuardUnavailable as exc:
            ctx.log.warning("guards unavailable; follow-up steps stay pending", error=str(exc))
            return Verdict.retry(
                deps.settings.guards_down_retry_s,
                f"guards unavailable (Redis): no {ctx.phase} step ran, it will be retried",
            )
        if not admission.admitted:
            assert admission.refusal is not None
            return await self.refused(ctx, admission.refusal)
        release_when_done(deps, ctx, request, admission)
        if await withdrawn_on_take_up(deps, ctx):
            return Verdict.stop(self._outcome, "undo withdrawn: the alert fired again")
        # The follow-up's own phase, 'resolve' or 'on_failed' (a reviewer read both as undo),
        # and whether it drew a budget slot of its own (given back if it is refused for good).
        checked, fence, drawn = admission.checked, admission.fence, admission.budget_drawn
        await deps.store.record_admission(
            ctx.run_id, checked, phase=ctx.phase, fence=fence, lease=ctx.lease, budget_drawn=drawn
        )
        ctx.log.info("follow-up steps admitted", phase=ctx.phase, fence=admission.fence)
        return Verdict.next()

    async def refused(self, ctx: RunContext, refusal: Refusal) -> Verdict:
        """The follow-up's steps in ``ctx.runnable`` are refused by ``refusal``: held (a job
        tries them again) or, by a final guard, ended; also what ``Execute`` does with the
        steps left when a pause comes while an earlier one acts."""
        deps = self._deps
        assert ctx.run_id is not None
        deps.metrics.guard_refused(refusal.guard)
        final = refusal.guard in _FINAL_GUARDS
        if final:
            message = f"refused by the {refusal.guard} guard: {refusal.reason}"
            outcome = str(Outcome.REFUSED)
        else:
            delay = self._delay(refusal.retry_at)
            # The job first: a crash after it leaves a retry without its note, not the reverse.
            await deps.store.enqueue_job(self._job, ctx.run_id, delay_s=delay)
            message = (
                f"held by the {refusal.guard} guard: {refusal.reason}; tried again in {delay:.0f}s"
            )
            outcome = STEP_PENDING
        # A step held for its approval stays so while a guard holds the rest: its decision (or
        # expiry) ends it. Refused for good, it ends with them (below); when only held steps
        # are left, the first is the one refused.
        held = {
            s.idx
            for s in (ctx.prior.steps if ctx.prior is not None else ())
            if s.phase == ctx.phase and s.outcome == STEP_AWAITING_APPROVAL
        }
        refused = [s for s in ctx.runnable if s.index not in held]
        if final and not refused:
            refused = list(ctx.runnable[:1])
        for step in refused:
            await record_step(deps, ctx, step, outcome, message)
        ctx.log.warning(
            "follow-up steps refused" if final else "follow-up steps held",
            phase=ctx.phase,
            guard=refusal.guard,
            reason=refusal.reason,
        )
        if not final:
            return Verdict.park(self._outcome, message)
        # Over: the steps left open (a held one before the refused one too) end, and their
        # approvals, so that none of it acts later on its own.
        ended = await deps.store.end_phase(ctx.run_id, ctx.phase, message)
        if ended.approvals and deps.approvals is not None:
            await deps.approvals.phase_ended(ended.approvals)
        await BudgetRefund(deps.store, deps.guards).follow_up_refused(ctx)
        if self._notice is not None:
            first = refused[0]
            await self._notice(
                ctx, StoppedUndo(first.index, first.action, str(Outcome.REFUSED), message)
            )
        return Verdict.stop(self._outcome, message)

    def _delay(self, retry_at: datetime | None) -> float:
        longest = self._deps.settings.resolve_retry_s
        if retry_at is None:
            return longest
        wait = (retry_at - self._deps.clock()).total_seconds()
        return min(longest, max(1.0, wait))


async def taken_up_resolving(
    store: Store, run: RunRecord, log: Any, announce: Announce | None = None
) -> RunContext:
    """``resolving_context`` with the alert that created the run read back from the store
    (``RunContext.origin``; its labels are the resolved one's): an on_resolved step taken up
    again (after its approval, a guard's hold) previews and writes about the same alert as it
    did when its approval was asked for, so the approved plan hashes the same."""
    ctx = resolving_context(run, log, announce)
    await read_origin(store, ctx, run.event_id)
    return ctx


def resolving_context(run: RunRecord, log: Any, announce: Announce | None = None) -> RunContext:
    """The resolve-path context of a closed run, to finish its pending on_resolved steps (a
    retried resolved event, or a ``resume_resolve`` job): ``Close`` reads the steps.
    ``announce``: the ``notify`` of the run's rule as loaded now (None: it is gone, or has
    none), where an undo that did not happen is announced."""
    return RunContext(
        rule=run.rule,
        target=run.target,
        steps=(),
        guards=GuardSpec(),
        verify_within_s=run.verify_within_s,
        log=log,
        phase="resolve",
        run_id=run.id,
        prior=run,
        announce=announce,
    )


def _time(text: str) -> datetime | None:
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def resolved_at(event: AlertEvent) -> datetime | None:
    """When the alert resolved, as it says: its endsAt; None when it carries none (Go's zero
    time) or an unreadable one. The store dates one far ahead of its own clock when it is stored
    (``Verification.close_run``), on the clock the run's creation and deadline were set by."""
    try:
        ends = parse_rfc3339(event.ends_at)
    except ValueError:
        return None
    return None if ends.year == 1 else ends
