"""execute: the stage that runs a run's steps (its own, its on_resolved or its on_failed ones)
that the stages before it let through, one after another (``Execute``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from receiver.guards.policy import AdmissionRequest, GuardUnavailable, Refusal
from receiver.model import GuardSpec, Verdict
from receiver.pipeline.context import STOPS_RUN, Deps, RunContext, record_step
from receiver.pipeline.steps import StepRunner
from receiver.pipeline.unreachable import StepDeferred
from remediations.base import Outcome, Result

__all__ = ["Execute"]

# The guard a lost target lock is refused under (``Guards.between_steps``).
_LOCK_GUARD = "lock"


class Execute:
    """execute: run the steps the previous stages let through, in order; the first that fails,
    is refused by its precondition or was interrupted by a worker's stop (``STOPS_RUN``)
    stops the rest. Before each step after the first, and before a first one when this pass
    settled a step already (a held step that changed nothing: ``turns.StepTurns``), the kill
    switch is asked again, and the target lock is confirmed to hold still the token this
    pass's admission took it with (one Redis script for both; the first step's admission was
    just asked): a pause set while the earlier steps acted stops the rest as the phase's
    admission would have. So does a lock lost meanwhile (expired during a long step, deleted,
    or gone with a Redis that restarted without its data, when another run on the target may
    have been admitted): the steps left never act on a target the run may not hold alone,
    refused (a run's) or held for a job that admits them again (a follow-up's), with a message
    saying the lock was lost. A run's next step is
    refused and the run ends (``Admit``); a follow-up's (on_resolved, on_failed) go to
    ``hold``, its admission's refusal (``follow_up.AdmitResolve.refused``: held, tried again by
    a job once the pause ends). A pause that cannot be checked runs nothing more now: the
    steps left stay pending and the event or job is retried, as at admission. So does a step
    whose system could not be reached, nothing sent (``pipeline.unreachable``), for as long as
    it may wait for it.

    A service that is stopping (``Deps.stopping``, set by ``Pipeline.wind_down`` as ``serve``
    begins to stop) begins no step: the one acting finishes within the shutdown's grace, and
    the steps left stay pending, the event or job handed back at once for the next worker to
    take up where this one stopped. Begun, a step cut off at the end of the grace, or timed out
    while its system was slow, is one that may have acted: recorded so, its run failed, never
    to be called again."""

    name = "execute"

    def __init__(
        self,
        runner: StepRunner,
        deps: Deps,
        hold: Callable[[RunContext, Refusal], Awaitable[Verdict]] | None = None,
    ) -> None:
        self._runner = runner
        self._deps = deps
        self._hold = hold

    async def __call__(self, ctx: RunContext) -> Verdict:
        for n, step in enumerate(ctx.runnable):
            if self._deps.stopping.is_set():
                ctx.log.info("the service is stopping; the steps left wait", step=step.index)
                return Verdict.retry(
                    0.0,
                    f"the service stopped before step {step.index} began: the steps left wait "
                    "for the next worker",
                )
            # After a run's first step, and after a step this pass settled already (a held
            # step that changed nothing: ``turns.StepTurns``), the pause may have come since.
            if n or ctx.results:
                try:
                    refusal = await self._between_steps(ctx)
                except GuardUnavailable as exc:
                    ctx.log.warning(
                        "guards unavailable; the steps left wait", step=step.index, error=str(exc)
                    )
                    return Verdict.retry(
                        self._deps.settings.guards_down_retry_s,
                        f"guards unavailable (Redis): the pause and the target lock could not "
                        f"be checked before "
                        f"step {step.index}, so the steps left wait; it will be retried",
                    )
                if refusal is not None:
                    return await self._stopped(ctx, n, refusal)
            try:
                result = await self._runner(ctx, step)
            except StepDeferred as deferred:
                # Its system could not be reached and nothing was sent: this step and the
                # ones after it stay pending, as when the guards cannot be asked.
                return deferred.verdict()
            ctx.results.append((step, result))
            if result.outcome is Outcome.OK and result.before:
                ctx.remember(step.action, result.before, result.after)
            if result.outcome in STOPS_RUN:
                break
        return Verdict.next()

    async def _between_steps(self, ctx: RunContext) -> Refusal | None:
        """The refusal of the next step by the pause or by a lost target lock, or None.
        Raises GuardUnavailable."""
        assert ctx.run_id is not None
        request = AdmissionRequest(ctx.run_id, ctx.rule, ctx.target, False, GuardSpec())
        # No admission this pass (none took the lock), no lock to confirm.
        token = ctx.admission.lock_token if ctx.admission is not None else None
        return await self._deps.guards.between_steps(request, token)

    async def _stopped(self, ctx: RunContext, n: int, refusal: Refusal) -> Verdict:
        """The pause, or the loss of the target lock, came while step ``n - 1`` acted: the
        steps from ``n`` on do not run now."""
        lost = refusal.guard == _LOCK_GUARD
        ctx.log.warning(
            "steps left not run: " + ("the target lock was lost" if lost else "paused"),
            step=ctx.runnable[n].index,
            reason=refusal.reason,
        )
        if self._hold is not None:
            ctx.runnable = ctx.runnable[n:]
            return await self._hold(ctx, refusal)
        self._deps.metrics.guard_refused(refusal.guard)
        step = ctx.runnable[n]
        when = "while the earlier steps acted" if lost else "set while the earlier steps acted"
        message = f"refused by the {refusal.guard} guard: {refusal.reason} ({when})"
        await record_step(self._deps, ctx, step, Outcome.REFUSED, message)
        ctx.results.append((step, Result(Outcome.REFUSED, message)))
        return Verdict.next()
