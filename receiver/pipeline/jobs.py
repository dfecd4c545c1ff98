"""What the worker does with a claimed job: take a parked run up again, or end a verification.

Job kinds (``receiver.store`` keeps them with the same lease, claim and wake-up as alert
events):
- ``resume_run``: a parked run continues through the run stages (after an approval decision,
  or when a guard's ``retry_at`` has come). A run that is no longer parked, or whose alert has
  resolved meanwhile, is left alone: nothing acts on an alert that is over. A run waiting for
  an approval goes on only once it was given (``ApprovalDesk.gate``), and the same job, due when
  the approval expires, expires it.
- ``verify_deadline``: a run still ``verifying`` when its deadline comes is ``failed``: its
  alert did not resolve in time.
- ``resume_resolve``: a closed run's on_resolved steps that a guard held (pause, target lock)
  go through the resolve stages again.
"""

from __future__ import annotations

from typing import Any

from receiver.approvals.desk import Gate
from receiver.model import Disposition
from receiver.pipeline.context import Deps
from receiver.pipeline.events import disposition_of
from receiver.pipeline.resolve import resolving_context
from receiver.pipeline.runner import RESUMABLE, Stages, context_of, run_stages
from receiver.rules.loader import RuleHolder
from receiver.store import ClaimedJob, JobKind

__all__ = ["JobHandler"]


class JobHandler:
    """``await handler(job) -> Disposition``. An unknown kind is a retry with an error that
    says so (a newer replica may know it during a rolling update)."""

    def __init__(self, deps: Deps, stages: Stages, rules: RuleHolder, log: Any) -> None:
        self._deps = deps
        self._stages = stages
        self._rules = rules
        self._log = log

    async def __call__(self, job: ClaimedJob) -> Disposition:
        log = self._log.bind(job_id=job.id, job=job.kind, run_id=job.run_id)
        if job.kind is JobKind.VERIFY_DEADLINE:
            if await self._deps.store.expire_verifications(run_id=job.run_id):
                log.info("verification expired: the alert did not resolve in time")
                expired = await self._deps.store.get_run(job.run_id, with_steps=False)
                if expired is not None:
                    self._deps.metrics.run_finished(expired.rule, expired.outcome)
            return Disposition.done()
        if job.kind is JobKind.RESUME_RUN:
            run = await self._deps.store.get_run(job.run_id)
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
            rule = self._rules.current.by_name(run.rule)
            ctx = context_of(run, rule.guards if rule else None, log)
            return disposition_of([await run_stages(self._stages.run, ctx)])
        if job.kind is JobKind.RESUME_RESOLVE:
            run = await self._deps.store.get_run(job.run_id, with_steps=False)
            if run is None or run.resolved_at is None:
                log.info("no closed run to finish", found=run is not None)
                return Disposition.done()
            return disposition_of(
                [await run_stages(self._stages.resolve, resolving_context(run, log))]
            )
        return Disposition.retry(60.0, f"unknown job kind {job.kind!r}")
