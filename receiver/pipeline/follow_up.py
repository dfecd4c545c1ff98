"""The admission of a run's follow-up steps: its on_resolved steps once the alert resolved
(resolve.py), and its on_failed steps once its verification failed (escalate.py).

``AdmitResolve`` puts the follow-up's steps through the guards that still apply to it
(``RESOLVE_GUARDS`` for an undo: pause, namespace policy, target lock; ``ESCALATE_GUARDS`` for
an escalation, which may make a new change: the budget too, asked only for a disruptive step
that will act; one that runs dry, in dry-run mode or with its system missing, changes nothing
and draws no slot, as for a run's own steps). A follow-up is held by a guard rather than
refused: a held step stays ``pending`` with the refusal in its message, and a job
(``resume_resolve``, ``resume_run``) takes it up again when the guard says it may pass (a
pause's end, the lock's expiry), or after ``resolve_retry_s`` at the latest. A namespace
refusal will not pass by waiting: the steps are recorded ``refused``, any other not done yet
(one held for its approval) ``not_run`` and its approval cancelled (``Store.end_phase``), the
undo announced as not done (``undo.UndoNotice``). Redis unreachable changes nothing, retries.
"""

from __future__ import annotations

from receiver.guards.policy import GuardUnavailable, Refusal
from receiver.model import GuardSpec, RunOutcome, Verdict
from receiver.pipeline.budget import BudgetRefund, admission_request
from receiver.pipeline.context import (
    RESOLVE_GUARDS,
    STEP_AWAITING_APPROVAL,
    STEP_PENDING,
    Deps,
    RunContext,
    record_step,
    release_when_done,
)
from receiver.pipeline.refired import withdrawn_on_take_up
from receiver.pipeline.undo import StoppedUndo, UndoNotice
from receiver.store import JobKind
from remediations.base import Outcome

__all__ = ["AdmitResolve"]

# Refusals that waiting cannot lift: the steps are refused, not held.
_FINAL_GUARDS = frozenset({"namespace"})


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
    acted (``BudgetRefund.follow_up_ended``), and the first refused step is told to
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
        # Counts only where the budget is asked (an escalation may make a new change).
        request = admission_request(deps, ctx, ctx.runnable, GuardSpec())
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
        # Its lock token, which Execute checks the lock still holds before each later step.
        ctx.admission = admission
        release_when_done(deps, ctx, request, admission)
        if await withdrawn_on_take_up(deps, ctx):
            return Verdict.stop(self._outcome, "undo withdrawn: the alert fired again")
        # The follow-up's own phase, 'resolve' or 'on_failed' (a reviewer read both as undo),
        # and whether it drew a budget slot of its own (given back if it is refused for good).
        checked, fence, drawn = admission.checked, admission.fence, admission.budget_drawn
        await deps.store.record_admission(
            ctx.run_id,
            checked,
            phase=ctx.phase,
            fence=fence,
            lease=ctx.lease,
            budget_drawn=drawn,
            lock_token=admission.lock_token,
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
            delay = self._delay(refusal)
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
        await BudgetRefund(deps.store, deps.guards, deps.registry).follow_up_ended(ctx)
        if self._notice is not None:
            first = refused[0]
            await self._notice(
                ctx, StoppedUndo(first.index, first.action, str(Outcome.REFUSED), message)
            )
        return Verdict.stop(self._outcome, message)

    def _delay(self, refusal: Refusal) -> float:
        longest = self._deps.settings.resolve_retry_s
        # Measured on the Redis clock that decided it, not the service's (Refusal.retry_in_s).
        if refusal.retry_in_s is None:
            return longest
        return min(longest, max(1.0, refusal.retry_in_s))
