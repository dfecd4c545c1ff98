"""What the worker does with a claimed job: take a parked run up again, or end a verification.

Job kinds (``receiver.store`` keeps them with the same lease, claim and wake-up as alert
events):
- ``resume_run``: a parked run continues through the run stages (after an approval decision,
  or when a guard's ``retry_at`` has come). A run that is no longer parked is left alone. One
  still open (pending, running, awaiting_approval) whose alert has resolved meanwhile (its
  resolution taken up, or only stored: still queued, or dead until an operator retries it) ends
  ``cancelled``, none of its steps left run: nothing acts on an alert that is over, and the run
  does not stay open for good (``run_overtaken``: an approved step's approval cancelled and
  its approvers told, as the approve stage does after the step's preview). A run waiting for
  an approval goes on only once it was given (``ApprovalDesk.gate``), and the same job, due when
  the approval expires, expires it. A run whose verification failed is taken up by its
  escalation instead (``escalate.py``: the breaker, the announcement, its on_failed steps).
- ``verify_deadline``: a run still ``verifying`` at its deadline, with no resolution dated by
  it delivered within the delivery grace after it (``Store.delivery_grace_s``: a
  resolution comes at its group's next flush after ``endsAt``), has ``failed``
  (not_resolved), unless a resolution of its episode is stored and not yet taken up (queued,
  or dead until an operator retries or drops it: looked at again meanwhile); one whose alert
  resolved in time and stayed resolved through its settle period is ``verified``; one still
  settling is looked at again when that ends.
- ``resume_resolve``: a closed run's on_resolved steps that a guard held (pause, target lock),
  or that a pass running them stopped in (the job is their safety net, kept from coming due
  while that pass lives: pipeline.holdback), go through the resolve stages again; withdrawn
  to the next resolution, not run, if the alert fired again meanwhile (pipeline.refired). An
  on_resolved step held for its approval is taken up by ``resume_run`` (the job an approval's
  decision and its expiry wake), through the same gate as a run step; approved, it does not
  act if its alert has fired again meanwhile (the approve stage withdraws it to the next
  resolution: ``Store.withdraw_refired_undo``).
- ``release_lock``: the target lock of a run that has ended, which the pass that ended it could
  not give back (Redis did not answer): given back by the exact tokens the job names, retried
  until Redis answers (pipeline.lock_release).
- ``finish_end``: what follows the end of a run or its approvals, queued in the transaction
  that ends it (an operator's drop of the job a run waited on, an approval expired, rejected
  or cancelled by the resolution, a run its resolution overtook: receiver.store.finish): the
  budget slot the ended run never used given back, the approvers told, the lock its last
  admission took released; retried until Redis and their channel answer
  (pipeline.finish_end).
"""

from __future__ import annotations

from typing import Any

from receiver.approvals.desk import Gate
from receiver.model import Announce, Disposition, RunOutcome, VerifyResult
from receiver.pipeline.context import STEP_AWAITING_APPROVAL, Deps
from receiver.pipeline.escalate import Escalation, escalating
from receiver.pipeline.events import disposition_of
from receiver.pipeline.finish_end import finish_end
from receiver.pipeline.lock_release import release_queued
from receiver.pipeline.overtaken import run_overtaken
from receiver.pipeline.resolve import taken_up_resolving
from receiver.pipeline.runner import RESUMABLE, Stages, run_stages, take_up
from receiver.rules.loader import RuleHolder
from receiver.store import ClaimedJob, JobKind, LeaseFence, RunRecord

__all__ = ["JobHandler"]


class JobHandler:
    """``await handler(job) -> Disposition``. An unknown kind is a retry with an error that
    says so (a newer replica may know it during a rolling update)."""

    def __init__(self, deps: Deps, stages: Stages, rules: RuleHolder, log: Any) -> None:
        self._deps = deps
        self._stages = stages
        self._rules = rules
        self._log = log
        self._escalation = Escalation(deps, stages.escalate, stages.announce)

    async def __call__(self, job: ClaimedJob) -> Disposition:
        log = self._log.bind(job_id=job.id, job=job.kind, run_id=job.run_id)
        if job.kind is JobKind.VERIFY_DEADLINE:
            return await self._deadline(job.run_id, log)
        if job.kind is JobKind.RELEASE_LOCK:
            return await release_queued(self._deps, job.run_id, job.payload, log)
        if job.kind is JobKind.FINISH_END:
            return await finish_end(self._deps, job.run_id, job.payload, log)
        if job.kind is JobKind.RESUME_RUN:
            run = await self._deps.store.get_run(job.run_id)
            # Its alert resolved while it was parked (approved, the target lock, a worker that
            # stopped in it): none of its steps left acts, and it ends here rather than stay
            # open for good. Before its held undo (below) is looked at. The store looks
            # (RESOLVED_SQL), not ``resolved_at``: a resolution stored and not taken up
            # (queued, or dead: its attempts used up) has not stamped that.
            if (
                run is not None
                and run.outcome in RESUMABLE
                and await run_overtaken(self._deps, run.id, run.rule, run.target, log, job.fence)
            ):
                run = await self._deps.store.get_run(job.run_id)
            rule = self._rules.current.by_name(run.rule) if run is not None else None
            # An on_resolved step held for its approval (the run is closed): its decision or
            # its expiry wakes this job, beside whatever else the run waits for.
            held = run is not None and _undo_held(run)
            undo = await self._undo(run, log, job.fence) if run is not None and held else None
            if run is not None and escalating(run):
                return _either(undo, await self._escalation(run, rule, log, job.fence))
            if undo is not None:
                return undo
            if run is None or run.outcome not in RESUMABLE or run.resolved_at is not None:
                log.info(
                    "nothing to resume",
                    outcome=str(run.outcome) if run else None,
                    resolved=run is not None and run.resolved_at is not None,
                )
                return Disposition.done()
            desk = self._deps.approvals
            if desk is not None and await desk.gate(run) != Gate.GO:
                # An approval still pending (woken early) or just expired: no stage, no guard.
                return Disposition.done()
            ctx = await take_up(self._deps.store, run, rule, log)
            ctx.lease = job.fence
            return disposition_of([await run_stages(self._stages.run, ctx)])
        if job.kind is JobKind.RESUME_RESOLVE:
            run = await self._deps.store.get_run(job.run_id, with_steps=False)
            if run is None or run.resolved_at is None:
                log.info("no closed run to finish", found=run is not None)
                return Disposition.done()
            ctx = await taken_up_resolving(self._deps.store, run, log, self._announce_of(run))
            ctx.lease = job.fence
            return disposition_of([await run_stages(self._stages.resolve, ctx)])
        return Disposition.retry(60.0, f"unknown job kind {job.kind!r}")

    async def _undo(self, run: RunRecord, log: Any, fence: LeaseFence | None) -> Disposition:
        """Take up the on_resolved steps of ``run`` once the held one's approval was given;
        an expired one ends them (``ApprovalDesk.gate``), a pending one waits."""
        desk = self._deps.approvals
        if desk is not None and await desk.gate(run, undo=True) != Gate.GO:
            return Disposition.done()
        ctx = await taken_up_resolving(self._deps.store, run, log, self._announce_of(run))
        ctx.lease = fence
        return disposition_of([await run_stages(self._stages.resolve, ctx)])

    def _announce_of(self, run: RunRecord) -> Announce | None:
        """The ``notify`` of ``run``'s rule as loaded now (where an undo that did not happen
        is announced); None when the rule is gone or announces nothing."""
        rule = self._rules.current.by_name(run.rule)
        return rule.announce if rule is not None else None

    async def _deadline(self, run_id: str, log: Any) -> Disposition:
        """End the run's verification if its time has come (``store.conclude_verification``):
        a failure records the rule's on_failed steps with the job that feeds the breaker,
        announces it and runs them (``escalate.py``)."""
        deps = self._deps
        run = await deps.store.get_run(run_id, with_steps=False)
        if run is None or run.outcome is not RunOutcome.VERIFYING:
            return Disposition.done()
        rule = self._rules.current.by_name(run.rule)
        escalation = [s.to_plan() for s in rule.on_failed] if rule is not None else []
        ended = await deps.store.conclude_verification(run_id, escalation)
        if ended is None:
            return Disposition.done()
        if ended.result is None:
            # Woken before the end (the deadline job of a run that is now settling, or within
            # the delivery grace after the deadline): again then.
            await deps.store.enqueue_job(
                JobKind.VERIFY_DEADLINE, run_id, delay_s=max(0.0, ended.wait_s or 0.0)
            )
            log.info("verification continues", wait_s=ended.wait_s)
            return Disposition.done()
        outcome = _ENDED_AS.get(ended.result, RunOutcome.FAILED)
        deps.metrics.run_finished(run.rule, outcome)
        deps.metrics.verification_ended(run.rule, ended.result)
        log.info("verification ended", result=str(ended.result), escalation=ended.escalation)
        return Disposition.done()


# The outcome of a run whose verification ended with each result; any other: failed.
_ENDED_AS = {
    VerifyResult.VERIFIED: RunOutcome.VERIFIED,
    # Its steps did what they were asked; the resolution came before them: nothing credited.
    VerifyResult.RESOLVED_BEFORE_ACTION: RunOutcome.SUCCEEDED,
}


def _undo_held(run: RunRecord) -> bool:
    """Whether an on_resolved step of ``run`` waits for its approval."""
    return any(s.phase == "resolve" and s.outcome == STEP_AWAITING_APPROVAL for s in run.steps)


def _either(first: Disposition | None, second: Disposition) -> Disposition:
    """A retry when either asks for one (the first's first), else done."""
    if first is not None and not first.is_done:
        return first
    return second
