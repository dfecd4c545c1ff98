"""What follows a failed verification: the breaker, the announcement, the escalation ladder.

When a run's verification fails (not resolved in time, or recurred), the store marks it
``failed``, records the rule's ``on_failed`` steps as pending (phase ``on_failed``) and queues
a ``resume_run`` job, in one transaction (``store.verification``). That job comes here:

1. the failure feeds the rule's circuit breaker, under a name of its own, so a retried job
   counts it once (Redis unreachable: the job is retried, nothing else happens);
2. the failure is announced (``verification_failed``), once;
3. the on_failed steps go through the escalation stages (``Stages.escalate``): admit (pause,
   namespace policy, budget, target lock), approve, execute, ask for an approval, record. A
   step that needs an approval parks the escalation; its decision (or its expiry) wakes the
   same job kind again, and the approval desk's gate decides as for a run step.

A step that fails, is refused or was interrupted ends the escalation, as a failed step ends a
run: ``RecordEscalation`` (record.py) records the on_failed steps after it ``not_run``
(``Store.stop_escalation``), and a pass that takes the escalation up again (another
``resume_run`` job of the run: an approval's decision, the job claimed again after its worker
died) leaves them out and ends them itself if a worker died before they were ended. A step a
worker died in that may run again (no ``started`` mark) is taken up again, and the ladder goes on.

An escalation whose alert is already over (it resolved since: its run's own occurrence when it
did not resolve in time, the re-fire when it recurred) neither acts nor asks anymore
(receiver.pipeline.overtaken): its steps that would need an approval are ``cancelled``, one
approved and not yet run and one that acts on a system ``not_run``, their approvals
``cancelled``; a ``notify`` step that needs no approval still runs (the failure it reports
happened). The job looks when it takes the escalation up; the approve stage looks again,
after its preview, before an approved step acts. The resolution's own pass, which cancels a
ladder step's pending approval, queues such a job with the cancellation
(``Store.cancel_approvals``): the steps after that one are not left pending.
"""

from __future__ import annotations

from typing import Any

from receiver.approvals.desk import Gate
from receiver.guards.policy import GuardUnavailable
from receiver.model import (
    Announcement,
    Disposition,
    GuardSpec,
    RunOutcome,
    VerifyResult,
)
from receiver.pipeline.announce import Announcer
from receiver.pipeline.context import (
    STEP_AWAITING_APPROVAL,
    STEP_PENDING,
    STEP_STARTED,
    Deps,
    RunContext,
    Stage,
    read_origin,
    stopped_at,
)
from receiver.pipeline.events import disposition_of
from receiver.pipeline.lock_back import follow_up_lock_given_back, lock_not_given_back
from receiver.pipeline.overtaken import escalation_overtaken
from receiver.pipeline.runner import plans_of, remember_changes, run_stages
from receiver.rules.model import Rule
from receiver.store import LeaseFence, RunRecord, StepRecord

__all__ = ["Escalation", "escalating"]

# Steps still to settle: planned, held, or started by a worker that stopped (the step runner
# records that one interrupted, without acting).
_OPEN = (STEP_PENDING, STEP_AWAITING_APPROVAL, STEP_STARTED)


def escalating(run: RunRecord) -> bool:
    """Whether ``run`` failed its verification, so its job is the escalation's."""
    return (
        run.outcome is RunOutcome.FAILED
        and run.escalated_at is not None
        and run.verify_result in (VerifyResult.NOT_RESOLVED, VerifyResult.RECURRED)
    )


class Escalation:
    """``await escalation(run, rule, log, lease) -> Disposition`` for an ``escalating`` run."""

    def __init__(self, deps: Deps, stages: tuple[Stage, ...], announce: Announcer) -> None:
        self._deps = deps
        self._stages = stages
        self._announce = announce

    async def __call__(
        self, run: RunRecord, rule: Rule | None, log: Any, lease: LeaseFence | None = None
    ) -> Disposition:
        """Announce the failed verification and run the ladder; ``lease``: the job's claim,
        which fences the run's writes (receiver.store.fence)."""
        deps = self._deps
        ctx = _context(run, rule, log)
        ctx.lease = lease
        # The alert behind the run, for what the ladder's steps and messages say about it (a
        # notify step's `{{ labels.x }}`); absent once retention pruned the event. One that
        # cannot be read fails the ladder's steps without acting (read_origin).
        await read_origin(deps.store, ctx, run.event_id)
        stop = stopped_at(run.steps, "on_failed")
        if stop is not None and any(_open(s) and s.idx > stop for s in run.steps):
            # A worker died between the step that stopped the ladder and its end: end it now,
            # as the record stage would have (``_context`` left those steps out already).
            ended = await deps.store.stop_escalation(run.id)
            ctx.log.info("escalation ended at its stopped step", step=stop, not_run=ended)
        try:
            await deps.guards.record_result(run.rule, False, failure_id=f"verify:{run.id}")
        except GuardUnavailable as exc:
            ctx.log.warning("guards unavailable; the failed verification waits", error=str(exc))
            return Disposition.retry(
                deps.settings.guards_down_retry_s,
                "guards unavailable (Redis): the failed verification is not counted yet",
            )
        moment = Announcement.VERIFICATION_FAILED
        if not await deps.store.was_announced(run.id, moment.value):
            await self._announce(ctx, moment, outcome=RunOutcome.FAILED, text=_why(run))
        if not ctx.steps:
            return await self._settled(ctx)
        if await escalation_overtaken(deps, ctx):
            # Nothing is held for an approval anymore: what is left (messages) runs now.
            if not ctx.steps:
                return await self._settled(ctx)
        elif (desk := deps.approvals) is not None and await desk.gate(run) != Gate.GO:
            return Disposition.done()  # an approval still pending, or just expired
        return disposition_of([await run_stages(self._stages, ctx)])

    async def _settled(self, ctx: RunContext) -> Disposition:
        """Done: no step of the ladder is left to run. A lock an earlier pass of it kept (Redis
        did not take it back as that pass ended) is given back first; Redis not answering,
        the job is retried (``follow_up_lock_given_back``)."""
        if not await follow_up_lock_given_back(self._deps, ctx):
            return disposition_of([lock_not_given_back(self._deps, ctx)])
        return Disposition.done()


def _why(run: RunRecord) -> str:
    if run.verify_result is VerifyResult.NOT_RESOLVED:
        return f"not resolved in time: {run.error}"
    return f"recurred: {run.error}"


def _open(step: StepRecord) -> bool:
    """Whether ``step`` is an on_failed step still to settle."""
    return step.phase == "on_failed" and step.outcome in _OPEN


def _context(run: RunRecord, rule: Rule | None, log: Any) -> RunContext:
    # None after a step that stopped the ladder: it ended there (``Store.stop_escalation``).
    stop = stopped_at(run.steps, "on_failed")
    steps = plans_of(s for s in run.steps if _open(s) and (stop is None or s.idx < stop))
    ctx = RunContext(
        rule=run.rule,
        target=run.target,
        steps=steps,
        # Not the rule's cooldown and rate: the escalation passes ESCALATE_GUARDS only.
        guards=GuardSpec(),
        verify_within_s=None,
        log=log,
        phase="on_failed",
        run_id=run.id,
        prior=run,
        announce=rule.announce if rule is not None else None,
        # The escalation's admission looks at these; the approve stage narrows them.
        runnable=steps,
    )
    remember_changes(ctx, run)
    ctx.bind(run_id=run.id, rule=run.rule, target=run.target.key, phase="on_failed")
    return ctx
