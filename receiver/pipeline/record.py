"""record/verify: the run's outcome from its steps, the verification deadline, the breaker,
and the announcement of what happened."""

from __future__ import annotations

from receiver.durations import format_duration
from receiver.guards.policy import GuardUnavailable
from receiver.model import Announcement, RunOutcome, Verdict
from receiver.pipeline.announce import Announcer
from receiver.pipeline.budget import MAY_HAVE_CHANGED, BudgetRefund
from receiver.pipeline.context import (
    STEP_AWAITING_APPROVAL,
    STOPS_RUN,
    WORKER_STOPPED,
    Deps,
    RunContext,
    record_step,
    release_lock,
)
from receiver.pipeline.lock_back import follow_up_lock_given_back, lock_not_given_back
from receiver.pipeline.marked import UNRECORDED
from receiver.store import JobKind
from remediations.base import Outcome, Result
from remediations.notify.action import Notify

__all__ = ["Record", "RecordEscalation"]

# Step outcomes that end a run: refused ends it refused, failed and interrupted failed.
_STOPS = STOPS_RUN
# Step outcomes that changed something (a simulated step stands for one in a rule test), or
# may have (a step a worker stopped in), as the engine counts them for on_resolved steps (it
# counts a failed step that may have acted too: such a step stops the run, never reaching the
# uses below, and is never an alert fault).
_CHANGED = frozenset({Outcome.OK, Outcome.SIMULATED}) | WORKER_STOPPED

# Outcomes at which a run's steps are done: announced as finished.
_DONE = frozenset(
    {
        RunOutcome.SUCCEEDED,
        RunOutcome.VERIFYING,
        RunOutcome.DRY_RUN,
        RunOutcome.FAILED,
        RunOutcome.REFUSED,
    }
)


# Outcomes at which every step of the run ended and none stopped it.
_STEPS_DONE = frozenset({RunOutcome.SUCCEEDED, RunOutcome.VERIFYING, RunOutcome.DRY_RUN})
# Outcomes after which a run that changed nothing gives its budget slot back here: its steps
# done, or a step's precondition refused it (a refused step did not act, ``steps.call``).
_REFUNDABLE = _STEPS_DONE | {RunOutcome.REFUSED}


def _changed_nothing(deps: Deps, final: RunOutcome, steps: list[tuple[str, str]]) -> bool:
    """True when no step (action, outcome) may have changed anything
    (``budget.MAY_HAVE_CHANGED``) and the run, ended ``final``, may hold a budget slot it never
    used: a step of a disruptive action ended ``noop``, or a step's precondition refused the
    run (its admission drew the slot for a step that never acted). Only the store's records
    decide (``BudgetRefund.steps_done``): this look spares that read to every run that
    acted."""
    if any(outcome in MAY_HAVE_CHANGED for _, outcome in steps):
        return False
    if final is RunOutcome.REFUSED:
        return True
    return any(
        outcome == Outcome.NOOP and action in deps.registry and deps.registry.get(action).disruptive
        for action, outcome in steps
    )


def _ran_dry(steps: list[tuple[str, str]]) -> bool:
    """True when a step ran dry and none of those that act on a system changed anything:
    the remediation did not happen, even if a ``notify`` step told someone about it (such a
    run read ``succeeded`` in the run list and the report while its restart had run dry)."""
    acting = [outcome for action, outcome in steps if action != Notify.name]
    dry = any(outcome == Outcome.DRY_RUN for _, outcome in steps)
    return dry and not any(outcome in _CHANGED for outcome in acting)


class Record:
    """record/verify: the outcome of this pass over the run, stored with what follows from it.

    A failed or refused step fails the run (so does one of an earlier pass whose worker died
    before writing the outcome, ``RunContext.stopped``; an ``interrupted`` one, which a worker
    stopped in and which may have acted, fails it too, feeding the breaker: the safe side;
    the run's error says to check the target by hand for it, and for a failed step that may
    have acted, ``Result.may_have_acted``); a held step parks it (awaiting_approval); a run
    whose steps that act on a system ran dry or changed nothing, one of them dry, is
    ``dry_run`` (a ``notify`` step that was sent does not make
    it more); otherwise it waits for its alert to resolve (``verifying``, with a deadline
    job) or, with nothing to verify, has ``succeeded``.
    A failed step feeds the rule's circuit breaker (a verification's failure does so when it
    is decided), except one that failed on its alert's own values (``Result.alert_fault``)
    in a run none of whose steps changed anything: the run's error says so. A run whose
    steps are done, its disruptive ones ``noop`` and none having changed anything, gives
    back the budget slot its admission drew (``BudgetRefund.steps_done``). The outcome is
    announced (``finished``, ``awaiting_approval``)."""

    name = "record"

    def __init__(self, deps: Deps, announce: Announcer) -> None:
        self._deps = deps
        self._announce = announce
        self._refund = BudgetRefund(deps.store, deps.guards, deps.registry)

    async def __call__(self, ctx: RunContext) -> Verdict:
        deps = self._deps
        assert ctx.run_id is not None
        steps = [*ctx.finished, *((step.action, result.outcome) for step, result in ctx.results)]
        outcomes = [outcome for _, outcome in steps]
        failed = [r for _, r in ctx.results if r.outcome in _STOPS]
        if ctx.stopped is not None:
            # An earlier pass's step stopped the run, and its worker died before writing
            # the outcome. Whether that step failed on its alert's values is not kept: the
            # breaker is fed (the safe side).
            earlier = ctx.stopped
            failed.insert(
                0,
                Result(
                    Outcome(earlier.outcome), earlier.message, may_have_acted=earlier.may_have_acted
                ),
            )
        error: str | None = None
        schedule: list[tuple[str, float]] = []
        # Not counted in the breaker: the run failed on its alert's values (a template over
        # them), and no step changed anything before. Once a step has acted, the failure
        # counts whatever its cause, or such alerts would repeat that action unchecked.
        alert_fault = bool(failed) and (
            all(r.alert_fault for r in failed if r.outcome is not Outcome.REFUSED)
            and not any(o in _CHANGED for o in outcomes)
        )
        if failed:
            first = failed[0].outcome
            final = RunOutcome.REFUSED if first is Outcome.REFUSED else RunOutcome.FAILED
            if first is Outcome.INTERRUPTED and failed[0].message.startswith(UNRECORDED):
                error = (
                    "the store was unreachable when a step's result was to be recorded (no "
                    "worker stopped): it may have acted, and was not run again; check the "
                    "target by hand; see the run's steps"
                )
            elif first is Outcome.INTERRUPTED:
                error = (
                    "a worker stopped while a step ran: it may have acted, and was not run "
                    "again; check the target by hand; see the run's steps"
                )
            elif failed[0].may_have_acted:
                error = (
                    "a step failed after its request may have reached its system: it may have "
                    "acted; check the target by hand; see the run's steps"
                )
            elif final is RunOutcome.FAILED and alert_fault:
                error = (
                    "a step failed on the alert's values before anything was changed (not "
                    "counted in the rule's circuit breaker); see the run's steps"
                )
            elif final is RunOutcome.FAILED:
                error = "a step failed; see the run's steps"
            else:
                error = "a step's precondition refused it; see the run's steps"
        elif ctx.awaiting is not None:
            await _hold(deps, ctx)
            final = RunOutcome.AWAITING_APPROVAL
        elif _ran_dry(steps):
            final = RunOutcome.DRY_RUN
        elif ctx.verify_within_s:
            final = RunOutcome.VERIFYING
            # Due when the delivery grace after the deadline ends: a resolution dated by the
            # deadline may come until then (jobs.py); one that comes verifies the run sooner.
            due = ctx.verify_within_s + deps.store.delivery_grace_s
            schedule.append((JobKind.VERIFY_DEADLINE, due))
        else:
            final = RunOutcome.SUCCEEDED
        parked_before = ctx.prior is not None and ctx.prior.outcome is final
        # The breaker is fed and the target lock given back before the outcome is written:
        # until that write commits the run is still running, so a worker that dies in
        # between leaves it to its event's (or job's) retry, which takes it up again and does
        # both once more (the failure counted once, under the run's id). Written first, a
        # death before the other two left the run ended, its failure never counted and its
        # target locked for `guards.lock_ttl`, since a retry leaves an ended run alone.
        if final is RunOutcome.FAILED and alert_fault:
            # Counting it would let a few bad alerts switch the rule off for the good ones.
            ctx.log.info("the circuit breaker is not fed: the step failed on the alert's values")
        elif final is RunOutcome.FAILED:
            try:
                await deps.guards.record_result(ctx.rule, False, failure_id=f"run:{ctx.run_id}")
            except GuardUnavailable as exc:
                # As the lock's below: ended now, the failure was never counted (a retry leaves
                # an ended run alone), and a rule failing while Redis took no write (or the
                # lock's release only) never tripped. Still running, its retry counts it.
                ctx.log.warning("could not feed the circuit breaker", error=str(exc))
                # What Redis said goes with it: a refusal that lasts (an ACL's NOPERM) keeps the
                # run running and its event pending for good, and `remediator events` shows why.
                return Verdict.retry(
                    deps.settings.guards_down_retry_s,
                    "guards unavailable (Redis): the run's failure could not be counted in its "
                    f"rule's circuit breaker, so its outcome waits; it will be retried ({exc})",
                )
        if not await release_lock(ctx):
            # Ended now, the run would leave its lock to a Redis that persists it (as a
            # deployment's must): every later run on the target waited out `guards.lock_ttl`.
            # Still running, it is taken up again, as after a crash here, and that pass gives
            # the lock back before the outcome is written. Parked now, it kept the lock as
            # long (its approval may take hours): the retry parks it, its approval asked
            # already, and that is not news then, so the one just asked for is told now.
            if final is RunOutcome.AWAITING_APPROVAL and ctx.requested_approval:
                await self._announce(
                    ctx, Announcement.AWAITING_APPROVAL, outcome=final, text=_waiting(ctx)
                )
            return Verdict.retry(
                deps.settings.guards_down_retry_s,
                "guards unavailable (Redis): the target lock could not be given back, so the "
                "run's outcome waits; it will be retried",
            )
        if final in _REFUNDABLE and _changed_nothing(deps, final, steps):
            # Its disruptive steps ended noop (a held one whose preview changed nothing was
            # never run), or a precondition refused the run before any step acted: the slot
            # its admission drew comes back, before the outcome is written so that its
            # escalation cannot be admitted under it meanwhile.
            await self._refund.steps_done(ctx.run_id, final, ctx.log)
        # A "finished" announcement with nothing to send is recorded with the outcome. The
        # event is not completed here: any message still follows, and until it is sent the
        # event stays claimed (its alert's next event waits for it; the lease keeper keeps a
        # lease that is still held).
        unsent = self._announce.unsent(ctx, Announcement.FINISHED) if final in _DONE else None
        await deps.store.set_run_outcome(
            ctx.run_id, final, error=error, schedule=schedule, announced=unsent, lease=ctx.lease
        )
        deps.metrics.run_finished(ctx.rule, final)
        ctx.log.info("run finished", outcome=str(final))
        if final is RunOutcome.AWAITING_APPROVAL:
            # News when an approval was just asked for; without an approval desk nobody is
            # asked, so say it the first time the run parks.
            if ctx.requested_approval or (deps.approvals is None and not parked_before):
                await self._announce(
                    ctx, Announcement.AWAITING_APPROVAL, outcome=final, text=_waiting(ctx)
                )
            return Verdict.park(final, "a step needs an engineer's approval")
        if unsent is not None:
            self._announce.noted(ctx, unsent)
        elif final in _DONE:
            await self._announce(
                ctx, Announcement.FINISHED, outcome=final, text=error or _verifying(ctx, final)
            )
        return Verdict.stop(final, error or "")


class RecordEscalation:
    """record (escalation): the on_failed steps of a failed run ran as far as they could.

    A held step parks the escalation (its approval's decision takes it up again); the run's
    outcome stays ``failed`` whatever the escalation does: the verification failed. A step that
    failed, was refused or was interrupted ends it, as a failed step ends a run: the on_failed
    steps after it are recorded ``not_run`` (``Store.stop_escalation``). An escalation that
    ended with none of its steps having changed anything (its disruptive ones ``noop``, or a
    precondition refused it) gives back the budget slot it drew of its own
    (``BudgetRefund.follow_up_ended``); one it shares with its run stays."""

    name = "record"

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._refund = BudgetRefund(deps.store, deps.guards, deps.registry)

    async def __call__(self, ctx: RunContext) -> Verdict:
        if not await follow_up_lock_given_back(self._deps, ctx):
            # Ended or parked now, the ladder would leave the lock to the target until its TTL.
            return lock_not_given_back(self._deps, ctx)
        stopped = next((step for step, r in ctx.results if r.outcome in _STOPS), None)
        if ctx.awaiting is not None and stopped is None:
            await _hold(self._deps, ctx)
            return Verdict.park(RunOutcome.FAILED, "an on_failed step needs an engineer's approval")
        if stopped is not None:
            # The rest of the ladder never runs, and a later pass (another resume_run job of
            # the run) must not find it pending.
            assert ctx.run_id is not None
            ended = await self._deps.store.stop_escalation(ctx.run_id)
            if ended:
                ctx.log.info(
                    "escalation ended at its stopped step", step=stopped.index, not_run=ended
                )
        ctx.log.info(
            "escalation done",
            steps=[(step.action, str(result.outcome)) for step, result in ctx.results],
        )
        if ctx.results and not any(r.outcome in MAY_HAVE_CHANGED for _, r in ctx.results):
            # Nothing of this pass acted; the refund reads the escalation's records of every
            # pass before it gives anything back.
            await self._refund.follow_up_ended(ctx)
        return Verdict.stop(RunOutcome.FAILED, "verification failed; on_failed steps done")


async def _hold(deps: Deps, ctx: RunContext) -> None:
    step = ctx.awaiting
    assert step is not None
    await record_step(
        deps, ctx, step, STEP_AWAITING_APPROVAL, "this step needs an engineer's approval"
    )


def _waiting(ctx: RunContext) -> str:
    step = ctx.awaiting
    action = step.action if step is not None else "a step"
    return (
        f"{action} needs an engineer's approval; decide with `remediator approvals list "
        f"--state pending --rule {ctx.rule}`"
    )


def _verifying(ctx: RunContext, final: RunOutcome) -> str:
    if final is not RunOutcome.VERIFYING or not ctx.verify_within_s:
        return ""
    text = f"verifying: the alert must resolve within {format_duration(ctx.verify_within_s)}"
    if ctx.settle_s:
        text += f" and stay resolved for {format_duration(ctx.settle_s)}"
    return text
