"""The resolve path: close -> admit -> execute, for a run whose alert resolved.

``Close`` stamps the run resolved and hands its pending on_resolved steps on; ``AdmitResolve``
puts them through the guards that still apply to undoing a change (``RESOLVE_GUARDS``: pause,
namespace policy, target lock); ``Execute`` (stages.py) runs them. The engine plans on_resolved
steps only for runs whose steps changed something, so a refused, dry-run or held run is closed
and nothing is undone.

A step the guards hold is not lost: it stays ``pending`` with the refusal in its message, and a
``resume_resolve`` job takes it up again when the guard says it may pass (a pause's end, the
lock's expiry), or after ``resolve_retry_s`` at the latest. A namespace refusal will not pass
by waiting: the steps are recorded ``refused``. Redis unreachable changes nothing and retries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.alertmanager import parse_rfc3339
from receiver.guards.policy import AdmissionRequest, GuardUnavailable, Refusal
from receiver.model import AlertEvent, GuardSpec, RunOutcome, StepPlan, Verdict
from receiver.pipeline.context import RESOLVE_GUARDS, STEP_PENDING, Deps, RunContext
from receiver.store import JobKind, RunRecord
from remediations.base import Outcome

__all__ = ["AdmitResolve", "Close", "resolved_at", "resolving_context"]

# Refusals that waiting cannot lift: the steps are refused, not held.
_FINAL_GUARDS = frozenset({"namespace"})


class Close:
    """The alert resolved: stamp the run closed and take up its pending on_resolved steps.

    The steps are recorded before the run is closed: a crash in between leaves pending resolve
    steps that the retried event (or a ``resume_resolve`` job) finishes, instead of losing them.
    A run closed earlier is not closed again; only its pending steps run."""

    name = "close"

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def __call__(self, ctx: RunContext) -> Verdict:
        store = self._deps.store
        assert ctx.run_id is not None
        ctx.bind(run_id=ctx.run_id, rule=ctx.rule, target=ctx.target.key)
        closed = False
        if ctx.event is not None:
            for planned in ctx.steps:
                await store.record_step(
                    ctx.run_id,
                    idx=planned.index,
                    phase="resolve",
                    action=planned.action,
                    outcome=STEP_PENDING,
                    params=planned.params,
                    needs_approval=planned.needs_approval,
                )
            closed_at = resolved_at(ctx.event, self._deps.clock())
            closed = await store.close_run(ctx.run_id, closed_at)
            if closed:
                ctx.log.info("run closed: alert resolved", resolved_at=closed_at.isoformat())
        if self._deps.approvals is not None:
            # A step still waiting for its approval is no longer wanted (idempotent).
            await self._deps.approvals.cancel(ctx.run_id)
        run = await store.get_run(ctx.run_id)
        if run is None:
            return Verdict.stop(RunOutcome.RESOLVED, "run no longer exists")
        if closed:
            self._measure(run)
        ctx.prior = run
        for step in run.steps:
            # What the run's own steps changed: an on_resolved step undoes that, and only that.
            if step.phase == "run" and step.outcome == Outcome.OK and step.before:
                ctx.remember(step.action, step.before, step.after or {})
        ctx.runnable = tuple(
            StepPlan(
                index=s.idx,
                action=s.action,
                params=s.params or {},
                needs_approval=s.needs_approval,
            )
            for s in sorted(run.steps, key=lambda s: s.idx)
            if s.phase == "resolve" and s.outcome == STEP_PENDING
        )
        return Verdict.next()

    def _measure(self, run: RunRecord) -> None:
        """Metrics of a run closed just now: its time to resolve, when its steps ran; the
        end of a run that was verifying."""
        metrics = self._deps.metrics
        if run.outcome is RunOutcome.RESOLVED:
            metrics.run_finished(run.rule, RunOutcome.RESOLVED)
        if run.time_to_resolve_s is not None and run.outcome in _ACTED:
            metrics.run_resolved(run.rule, run.time_to_resolve_s)


# Outcomes of runs whose steps ran: their time to resolve says how the remediation did.
_ACTED = frozenset({RunOutcome.RESOLVED, RunOutcome.SUCCEEDED, RunOutcome.FAILED})


class AdmitResolve:
    """admit (resolve path): pause, namespace policy and target lock for the on_resolved steps.

    Nothing to run passes at once. Admitted: the lock is held until the pipeline ends. Refused:
    recorded on each step (and audited); held steps get a ``resume_resolve`` job."""

    name = "admit"

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def __call__(self, ctx: RunContext) -> Verdict:
        deps = self._deps
        assert ctx.run_id is not None
        if not ctx.runnable:
            return Verdict.next()
        request = AdmissionRequest(
            run_id=ctx.run_id,
            rule=ctx.rule,
            target=ctx.target,
            disruptive=False,
            spec=GuardSpec(),
        )
        try:
            admission = await deps.guards.admit(request, only=RESOLVE_GUARDS)
        except GuardUnavailable as exc:
            ctx.log.warning("guards unavailable; on_resolved steps stay pending", error=str(exc))
            return Verdict.retry(
                deps.settings.guards_down_retry_s,
                "guards unavailable (Redis): no on_resolved step ran, it will be retried",
            )
        if not admission.admitted:
            assert admission.refusal is not None
            return await self._refused(ctx, admission.refusal)
        await deps.store.record_admission(
            ctx.run_id, admission.checked, phase="resolve", fence=admission.fence
        )

        async def release() -> None:
            try:
                await deps.guards.release(request, admission)
            except GuardUnavailable as exc:
                ctx.log.warning("could not release the target lock", error=str(exc))

        ctx.cleanups.append(release)
        ctx.log.info("on_resolved steps admitted", fence=admission.fence)
        return Verdict.next()

    async def _refused(self, ctx: RunContext, refusal: Refusal) -> Verdict:
        deps = self._deps
        assert ctx.run_id is not None
        deps.metrics.guard_refused(refusal.guard)
        final = refusal.guard in _FINAL_GUARDS
        if final:
            message = f"refused by the {refusal.guard} guard: {refusal.reason}"
            outcome = str(Outcome.REFUSED)
        else:
            delay = self._delay(refusal.retry_at)
            # The job first: a crash after it leaves a retry without its note, never the
            # other way round.
            await deps.store.enqueue_job(JobKind.RESUME_RESOLVE, ctx.run_id, delay_s=delay)
            message = (
                f"held by the {refusal.guard} guard: {refusal.reason}; tried again in {delay:.0f}s"
            )
            outcome = STEP_PENDING
        for step in ctx.runnable:
            await deps.store.record_step(
                ctx.run_id,
                idx=step.index,
                phase="resolve",
                action=step.action,
                outcome=outcome,
                params=step.params,
                needs_approval=step.needs_approval,
                message=message,
            )
        ctx.log.warning(
            "on_resolved steps refused" if final else "on_resolved steps held",
            guard=refusal.guard,
            reason=refusal.reason,
        )
        if final:
            return Verdict.stop(RunOutcome.RESOLVED, message)
        return Verdict.park(RunOutcome.RESOLVED, message)

    def _delay(self, retry_at: datetime | None) -> float:
        longest = self._deps.settings.resolve_retry_s
        if retry_at is None:
            return longest
        wait = (retry_at - self._deps.clock()).total_seconds()
        return min(longest, max(1.0, wait))


def resolving_context(run: RunRecord, log: Any) -> RunContext:
    """The resolve-path context of a closed run, to finish its pending on_resolved steps (a
    retried resolved event, or a ``resume_resolve`` job): ``Close`` reads the steps."""
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
    )


def resolved_at(event: AlertEvent, now: datetime) -> datetime:
    """When the alert resolved: its endsAt, or ``now`` when it carries none."""
    try:
        ends = parse_rfc3339(event.ends_at)
    except ValueError:
        return now
    return ends if ends.year > 1 else now
