"""record/verify: the run's outcome from its steps, the verification deadline, the breaker."""

from __future__ import annotations

from receiver.guards.policy import GuardUnavailable
from receiver.model import RunOutcome, Verdict
from receiver.pipeline.context import STEP_AWAITING_APPROVAL, Deps, RunContext
from receiver.store import JobKind
from remediations.base import Outcome

__all__ = ["Record"]

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
