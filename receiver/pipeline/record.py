"""record/verify: the run's outcome from its steps, the verification deadline, the breaker.

Also the first stage of a resolve: ``Close`` stamps the run resolved and hands its pending
on_resolved steps to ``Execute``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from receiver.alertmanager import parse_rfc3339
from receiver.guards.policy import GuardUnavailable
from receiver.model import AlertEvent, RunOutcome, StepPlan, Verdict
from receiver.pipeline.context import STEP_AWAITING_APPROVAL, STEP_PENDING, Deps, RunContext
from receiver.store import JobKind
from remediations.base import Outcome

__all__ = ["Close", "Record", "resolved_at"]

# Step outcomes that end a run.
_STOPS = (Outcome.FAILED, Outcome.REFUSED)


class Record:
    """record/verify: the outcome of this pass over the run, stored with what follows from it.

    A failed or refused step fails the run; a held step parks it (awaiting_approval); steps
    that all ran dry make it ``dry_run``; otherwise it waits for its alert to resolve
    (``verifying``, with a deadline job) or, with nothing to verify, has ``succeeded``.
    Succeeded, verifying and failed runs feed the rule's circuit breaker."""

    name = "record"

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def __call__(self, ctx: RunContext) -> Verdict:
        deps = self._deps
        assert ctx.run_id is not None
        outcomes = [*ctx.finished, *(result.outcome for _, result in ctx.results)]
        failed = [r.outcome for _, r in ctx.results if r.outcome in _STOPS]
        error: str | None = None
        schedule: list[tuple[str, float]] = []
        if failed:
            final = RunOutcome.FAILED if failed[0] is Outcome.FAILED else RunOutcome.REFUSED
            error = (
                "a step failed; see the run's steps"
                if final is RunOutcome.FAILED
                else "a step's precondition refused it; see the run's steps"
            )
        elif ctx.awaiting is not None:
            step = ctx.awaiting
            await deps.store.record_step(
                ctx.run_id,
                idx=step.index,
                action=step.action,
                outcome=STEP_AWAITING_APPROVAL,
                params=step.params,
                needs_approval=True,
                message="this step needs an engineer's approval",
            )
            final = RunOutcome.AWAITING_APPROVAL
        elif outcomes and all(o == Outcome.DRY_RUN for o in outcomes):
            final = RunOutcome.DRY_RUN
        elif ctx.verify_within_s:
            final = RunOutcome.VERIFYING
            schedule.append((JobKind.VERIFY_DEADLINE, ctx.verify_within_s))
        else:
            final = RunOutcome.SUCCEEDED
        await deps.store.set_run_outcome(ctx.run_id, final, error=error, schedule=schedule)
        if final in (RunOutcome.FAILED, RunOutcome.SUCCEEDED, RunOutcome.VERIFYING):
            try:
                await deps.guards.record_result(ctx.rule, final is not RunOutcome.FAILED)
            except GuardUnavailable as exc:
                ctx.log.warning("could not feed the circuit breaker", error=str(exc))
        deps.metrics.run_finished(ctx.rule, final)
        ctx.log.info("run finished", outcome=str(final))
        if final is RunOutcome.AWAITING_APPROVAL:
            return Verdict.park(final, "a step needs an engineer's approval")
        return Verdict.stop(final, error or "")


class Close:
    """The alert resolved: stamp the run closed and take up its pending on_resolved steps.

    The steps are recorded before the run is closed: a crash in between leaves pending resolve
    steps that the retried event finishes, instead of losing them. A run closed earlier (the
    crash case) is not closed again; only its pending steps run."""

    name = "close"

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def __call__(self, ctx: RunContext) -> Verdict:
        store = self._deps.store
        assert ctx.run_id is not None
        ctx.bind(run_id=ctx.run_id, rule=ctx.rule, target=ctx.target.key)
        if ctx.event is not None:
            for step in ctx.steps:
                await store.record_step(
                    ctx.run_id,
                    idx=step.index,
                    phase="resolve",
                    action=step.action,
                    outcome=STEP_PENDING,
                    params=step.params,
                    needs_approval=step.needs_approval,
                )
            closed_at = resolved_at(ctx.event, self._deps.clock())
            if await store.close_run(ctx.run_id, closed_at):
                ctx.log.info("run closed: alert resolved", resolved_at=closed_at.isoformat())
        if self._deps.approvals is not None:
            # A step still waiting for its approval is no longer wanted (idempotent).
            await self._deps.approvals.cancel(ctx.run_id)
        run = await store.get_run(ctx.run_id)
        if run is None:
            return Verdict.stop(RunOutcome.RESOLVED, "run no longer exists")
        pending = sorted(
            (s for s in run.steps if s.phase == "resolve" and s.outcome == STEP_PENDING),
            key=lambda s: s.idx,
        )
        recorded: dict[str, Mapping[str, Any]] = {
            s.action: dict(s.before) for s in run.steps if s.phase == "run" and s.before
        }
        ctx.recorded.update(recorded)
        ctx.runnable = tuple(
            StepPlan(
                index=s.idx,
                action=s.action,
                params=s.params or {},
                needs_approval=s.needs_approval,
            )
            for s in pending
        )
        return Verdict.next()


def resolved_at(event: AlertEvent, now: datetime) -> datetime:
    """When the alert resolved: its endsAt, or ``now`` when it carries none."""
    try:
        ends = parse_rfc3339(event.ends_at)
    except ValueError:
        return now
    return ends if ends.year > 1 else now
