"""The stages of a run: plan -> admit -> approve -> execute -> record, and close for resolves.

The approve stage (and asking for an approval after execute) is ``pipeline.approve``; the
execute stage is ``pipeline.execute``.

Each stage is one small object with the signature of ``context.Stage``. A stage records what
it decided (a refusal, an outcome) itself, so the runner only follows verdicts. They are
written to be taken up again: a resumed run passes through the same list, and each stage
skips what the store says is already done.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from receiver.guards.policy import (
    TEMPLATE_GUARD,
    Admission,
    AdmissionRequest,
    GuardUnavailable,
    Refusal,
)
from receiver.model import Announcement, RunOutcome, Verdict
from receiver.pipeline.announce import Announcer
from receiver.pipeline.approve import Approve
from receiver.pipeline.budget import BudgetRefund, admission_request
from receiver.pipeline.context import (
    STEP_PENDING,
    Deps,
    RunContext,
    release_when_done,
)
from receiver.pipeline.lock_release import release_or_queue, released_if_unrecorded
from receiver.pipeline.overtaken import release_admitted_lock, run_overtaken
from receiver.pipeline.steps import StepRunner
from receiver.store import JobKind, Refused, admitted_data, run_id_of
from remediations.base import ParamsError, renders_templates
from remediations.template_work import TemplateFailed

__all__ = ["LOCK_GUARD", "Admit", "Approve", "RecordPlan"]

# The guard whose refusal means "wait": another run holds the target right now.
LOCK_GUARD = "lock"


class RecordPlan:
    """plan: the engine's plan for this run, to become a run row with its pending steps in one
    statement.

    A new run gets its id now (``run_id_of``: the same on every attempt) and is stored by the
    admit stage once its guards have answered, in one statement: refused (a storm refuses most
    runs), or admitted and running (its admission audited with it); when the guards could not
    answer or the target lock is held, pending, so the outage or the wait is recorded on it. The
    run row is unique per (rule, occurrence): if another worker created it first, this one
    stops without touching it. (Never its own event's earlier attempt, whose statement landed
    late: fenced by that attempt's claim, it wrote nothing under this one, store/fence.py.) A
    run taken up again (``run_id`` known) keeps the steps it was planned with: a retry never
    re-plans it."""

    name = "plan"

    def __init__(self, deps: Deps, runner: StepRunner) -> None:
        self._deps = deps
        self._runner = runner

    async def __call__(self, ctx: RunContext) -> Verdict:
        if ctx.run_id is None:
            event = ctx.event
            assert event is not None  # only an event plans a new run
            ctx.run_id = run_id_of(ctx.rule, event.fingerprint, event.starts_at, event.refire)
            ctx.create = functools.partial(
                _in_turn,
                self._deps,
                run_id=ctx.run_id,
                rule=ctx.rule,
                event=event,
                target=ctx.target,
                dry_run=any(self._runner.runs_dry(ctx, s) for s in ctx.steps),
                occurrence=ctx.occurrence,
                verify_within_s=ctx.verify_within_s,
                steps=ctx.steps,
                step_outcome=STEP_PENDING,
                settle_s=ctx.settle_s,
                decision=ctx.decision,
                on_resolved=ctx.undo,
                lease=ctx.lease,
            )
        ctx.bind(run_id=ctx.run_id, rule=ctx.rule, target=ctx.target.key)
        return Verdict.next()


def _taken_up_as(ctx: RunContext) -> RunOutcome:
    """The outcome the run had when it was taken up again (a stored run: its admission, refusal
    or wait is recorded only while it still has it), pending for one this pass stored."""
    return ctx.prior.outcome if ctx.prior is not None else RunOutcome.PENDING


async def _in_turn(deps: Deps, /, **run: Any) -> str | None:
    """``store.create_run(**run)`` once this event's turn comes (receiver.priority)."""
    await deps.priority.turn()
    return await deps.store.create_run(**run)


async def stored(
    ctx: RunContext,
    refusal: Refused | None = None,
    announced: Mapping[str, Any] | None = None,
    admitted: Mapping[str, Any] | None = None,
) -> bool:
    """Store a new run if it is not stored yet: pending; refused, with ``refusal``; or
    admitted and running, with ``admitted`` (``admitted_data``). False when another worker
    stored it first (this one must leave it alone). A refused or admitted run takes with it,
    in the same statement, the ``announced`` row of an announcement that had nothing to send;
    a refused one also the completion of its event (``ctx.completes``, when set: nothing of
    the event follows): a storm's refusal is one transaction."""
    if ctx.create is None:
        return True
    create, ctx.create = ctx.create, None
    if refusal is not None:
        created = await create(refusal=refusal, announced=announced, complete=ctx.completes)
    elif admitted is not None:
        created = await create(admitted=admitted, announced=announced)
    else:
        created = await create()
    return created is not None


_OWNED_ELSEWHERE = Verdict.stop(RunOutcome.PENDING, "another worker owns this run")


class Admit:
    """admit: every guard in one atomic Redis call. A refusal ends the run (recorded with the
    guard and when it may pass), except the target lock's: another run is acting on the same
    target right now, so this one waits (stays pending, a ``resume_run`` job asks again soon)
    rather than being lost. Redis unreachable changes nothing and retries the job. The first
    admission announces the run as started; a refusal announces it refused. A service that is
    stopping asks no guard: the event or job goes back at once (``Deps.not_admitted_at_stop``).
    A run taken up again is admitted, refused or set waiting only while it still has the
    outcome it was taken up with (``expect=`` of the store's writes), and admitted only while
    its alert has not resolved: ended meanwhile (its alert's resolution, another worker's),
    nothing of it runs and what its guards took is given back; resolved, it ends
    ``cancelled`` (``run_overtaken``).

    Only steps that will change something draw on the global budget of disruptive actions: a
    step that runs dry disrupts nothing.

    Before the guards, every step whose params are templates over the alert is rendered
    (``RendersTemplates``, told by ``renders_templates``): a run one of whose steps cannot be
    rendered is refused by ``TEMPLATE_GUARD`` (receiver.guards.policy). It takes no guard's
    slot (a rate limit, the budget), feeds no breaker, and no step of it acts, not even the
    ones before the step that cannot be rendered."""

    name = "admit"

    def __init__(self, deps: Deps, announce: Announcer, runner: StepRunner) -> None:
        self._deps = deps
        self._announce = announce
        self._runner = runner
        self._refund = BudgetRefund(deps.store, deps.guards, deps.registry)

    def _unrenderable(self, ctx: RunContext) -> str | None:
        """Why a step of the run cannot be rendered over its alert; None when each can."""
        for step in ctx.steps:
            action = self._deps.registry.get(step.action)
            if not renders_templates(action):
                continue
            try:
                params = self._deps.registry.parse_params(step.action, step.params)
                action.render_check(self._runner.action_context(ctx, step), ctx.target, params)
            except ParamsError:
                continue  # the step fails when it runs, saying so
            except TemplateFailed as exc:
                return (
                    f"step {step.index + 1} ({step.action}) cannot be rendered over this "
                    f"alert: {exc.message}"
                )
        return None

    async def __call__(self, ctx: RunContext) -> Verdict:
        deps = self._deps
        assert ctx.run_id is not None
        # Only a run never admitted, so no step of which has acted: a run admitted once keeps
        # on, even when it is pending again (a lock wait after an approval, after a crash).
        fresh = ctx.prior is None or ctx.prior.started_at is None
        if fresh and (why := self._unrenderable(ctx)) is not None:
            return await self._refuse(ctx, Refusal(TEMPLATE_GUARD, why, None))
        request = admission_request(deps, ctx, ctx.steps, ctx.guards)
        await deps.priority.turn()
        if (handed_back := deps.not_admitted_at_stop(ctx)) is not None:
            return handed_back
        try:
            admission = await deps.guards.admit(request)
        except GuardUnavailable as exc:
            if not await stored(ctx):
                return _OWNED_ELSEWHERE
            # A new run stays pending; one taken up again (running: a crash interrupted its
            # steps) keeps its outcome. Either way no step runs until the guards answer.
            ctx.log.warning(
                "guards unavailable; no step runs until they answer",
                outcome=str(ctx.prior.outcome) if ctx.prior is not None else "pending",
                error=str(exc),
            )
            return Verdict.retry(
                deps.settings.guards_down_retry_s,
                "guards unavailable (Redis): no step ran this time, the event will be retried",
            )
        if not admission.admitted:
            assert admission.refusal is not None
            refusal = admission.refusal
            if refusal.guard == LOCK_GUARD:
                if not await stored(ctx):
                    return _OWNED_ELSEWHERE
                return await self._wait_for_lock(ctx, refusal)
            return await self._refuse(ctx, refusal)

        started = None
        if ctx.create is not None:
            # A new run is stored admitted and running in one statement, with its "started"
            # announcement when there is nothing to send.
            started = self._announce.unsent(ctx, Announcement.STARTED)
            admitted = admitted_data(
                admission.checked, fence=admission.fence, lock_token=admission.lock_token
            )
            async with released_if_unrecorded(deps, request, admission, ctx.log):
                created = await stored(ctx, announced=started, admitted=admitted)
            if not created:
                # Admitted under the same run id as the worker that stored it (admission is
                # idempotent per run id): its admission, not this one's to release.
                return _OWNED_ELSEWHERE
            ctx.admission = admission
            release_when_done(deps, ctx, request, admission)
        else:
            # Taken up again: admitted and running only if the run is still as it was taken up
            # (one conditional statement): the alert's resolution, another worker's, may have
            # ended it meanwhile, and it must stay ended.
            expect = _taken_up_as(ctx)
            async with released_if_unrecorded(deps, request, admission, ctx.log):
                taken = await deps.store.record_admission(
                    ctx.run_id,
                    admission.checked,
                    fence=admission.fence,
                    lease=ctx.lease,
                    expect=expect,
                    lock_token=admission.lock_token,
                )
            if not taken:
                await self._give_back(ctx, request, admission, fresh=fresh)
                # Its alert resolved meanwhile: it ends here (one ended already is left alone).
                await run_overtaken(deps, ctx.run_id, ctx.rule, ctx.target, ctx.log, ctx.lease)
                return Verdict.stop(expect, "the run ended, or its alert resolved, before it ran")
            ctx.admission = admission
            release_when_done(deps, ctx, request, admission)
        ctx.log.info("admitted", fence=admission.fence)
        if ctx.prior is None or ctx.prior.outcome is RunOutcome.PENDING:
            # Once: not again for a run taken up after an approval or a crash mid-steps.
            if started is not None:
                self._announce.noted(ctx, started)
            else:
                steps = ", ".join(s.action for s in ctx.steps)
                await self._announce.started(ctx, text=f"steps: {steps}")
        return Verdict.next()

    async def _give_back(
        self, ctx: RunContext, request: AdmissionRequest, admission: Admission, *, fresh: bool
    ) -> None:
        """The run ended, or its alert resolved, while its guards were asked
        (``record_admission`` found it so): nothing of it runs. The target lock is released,
        and the budget slot of a run never admitted before is given back (no step of it
        acted). Redis unreachable: a ``release_lock`` job gives the lock back once it answers
        (``release_or_queue``; before, it held the target until its TTL though the run had
        ended), the slot leaves the window with time (the safe side), logged."""
        deps = self._deps
        ctx.log.info("nothing to resume: the run ended, or its alert resolved, before admission")
        req, token = request, admission.lock_token
        if token is not None and (
            await release_or_queue(deps, req.run_id, req.rule, req.target, token, ctx.log) is None
        ):
            return  # Redis did not answer (nor would it for the slot)
        if fresh and request.disruptive:
            try:
                await deps.guards.refund_budget(request.run_id)
            except GuardUnavailable as exc:
                ctx.log.warning("budget slot of an ended run not given back", error=str(exc))

    async def _refuse(self, ctx: RunContext, refusal: Refusal) -> Verdict:
        """Record ``refusal`` on the run (a new run is stored refused in one statement), count
        it, and announce it; the run stops there. A run taken up again whose step was approved
        (a pause refuses it on its way to that step) ends its approval with it: cancelled,
        naming the guard, and the approvers told (``Store.record_refusal``); one admitted
        before gives back its budget slot when no step of it acted (``BudgetRefund``) and its
        last admission's lock, as does the ``finish_end`` job the refusal queued, later, when
        this pass cannot (receiver.store.finish)."""
        deps = self._deps
        assert ctx.run_id is not None
        refused = Refused(refusal.guard, refusal.reason, refusal.retry_at)
        # A refusal that would be announced is first offered to its rule's digest window (one
        # Redis call): folded, it is only recorded, never sent on its own (issue 12: a storm's
        # thousands of refusals flooded the channel, and the worker waited on each message).
        if ctx.create is not None:
            unsent = await self._announce.folded(ctx, refusal.guard)
            # The announcement is said in the run's own statement when nothing is to be
            # sent; else it is sent (and recorded) once the run is stored, below.
            if unsent is None:
                unsent = self._announce.unsent(ctx, Announcement.REFUSED)
            if unsent is None and self._announce.sends(ctx, Announcement.REFUSED):
                # The event is not finished until its message is out: completed with the
                # run, it would be done (and its alert's next event claimable) while the
                # message is on its way, and the lease keeper, finding nothing to extend,
                # would cancel the send. The worker completes it afterwards.
                ctx.completes = None
            if not await stored(ctx, refused, unsent):
                return _OWNED_ELSEWHERE
        else:
            recorded = await deps.store.record_refusal(
                ctx.run_id,
                refusal.guard,
                refusal.reason,
                refusal.retry_at,
                lease=ctx.lease,
                expect=_taken_up_as(ctx),
            )
            if not recorded.found:
                ctx.log.info("nothing to resume: the run ended before it was refused")
                return Verdict.stop(_taken_up_as(ctx), "the run ended before it was refused")
            unsent = await self._announce.folded(ctx, refusal.guard)
            if unsent is not None:
                await self._announce.record(ctx, unsent)
            if recorded.approvals and deps.approvals is not None:
                # A step approved, then refused on its way to running (a pause): its approval
                # ended with the run, and the approvers are told, as of any cancellation.
                await deps.approvals.phase_ended(recorded.approvals)
            if ctx.prior is not None and ctx.prior.started_at is not None:
                await self._refund.refused(ctx.run_id, ctx.log)
                # Its last admission's lock, which a worker that died may still hold.
                await release_admitted_lock(deps, ctx.run_id, ctx.rule, ctx.target, ctx.log)
        deps.metrics.guard_refused(refusal.guard)
        deps.metrics.run_finished(ctx.rule, RunOutcome.REFUSED)
        ctx.log.info(
            "refused",
            guard=refusal.guard,
            reason=refusal.reason,
            retry_at=refusal.retry_at.isoformat() if refusal.retry_at else None,
        )
        if unsent is not None:
            self._announce.noted(ctx, unsent)
        else:
            await self._announce(
                ctx,
                Announcement.REFUSED,
                outcome=RunOutcome.REFUSED,
                text=f"refused by the {refusal.guard} guard: {refusal.reason}",
            )
        return Verdict.stop(RunOutcome.REFUSED, refusal.reason)

    async def _wait_for_lock(self, ctx: RunContext, refusal: Refusal) -> Verdict:
        # The lock is held for as long as another run's steps take (seconds, usually), and its
        # retry_at is only the lock's expiry: ask again soon, and never later than that.
        deps = self._deps
        assert ctx.run_id is not None
        wait_s = deps.settings.lock_wait_s
        # Measured on the Redis clock that decided it, not the service's (Refusal.retry_in_s).
        if refusal.retry_in_s is not None:
            wait_s = min(wait_s, max(0.1, refusal.retry_in_s))
        waits = await deps.store.set_run_outcome(
            ctx.run_id,
            RunOutcome.PENDING,
            data={
                "waiting_for": refusal.guard,
                "reason": refusal.reason,
                "retry_at": refusal.retry_at.isoformat() if refusal.retry_at else None,
            },
            schedule=[(JobKind.RESUME_RUN, wait_s)],
            lease=ctx.lease,
            expect=_taken_up_as(ctx),
        )
        if not waits:
            ctx.log.info("nothing to resume: the run ended before it could wait for the lock")
            return Verdict.stop(_taken_up_as(ctx), "the run ended before it waited")
        deps.metrics.guard_refused(refusal.guard)
        ctx.log.info("waiting for the target lock", reason=refusal.reason, retry_in_s=wait_s)
        return Verdict.park(RunOutcome.PENDING, refusal.reason, after_s=wait_s)
