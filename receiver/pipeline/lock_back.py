"""A follow-up pass (a run's undo, phase 'resolve'; its escalation, phase 'on_failed') gives its
target lock back before it ends or parks, or is retried.

The run's own pass does this in ``Record`` (record.py: ``release_lock`` before the outcome).
A follow-up's lock was given back only by the pipeline's cleanup, after the pass had written
its end: a release Redis did not answer then (a blip; a Redis that persists, as a
deployment's must, keeps the lock over its restart) was logged, and the lock held the target
until ``guards.lock_ttl`` (10 minutes by default), every run on it waiting. Now the record
stages (``RecordResolve``, ``RecordEscalation``) give the lock back first, as they end the
follow-up or park it at an approval; Redis not answering, the pass is retried (its event or
job stays), as the run's own is, and the retry gives it back. (A follow-up held by a pause
between its steps still gives its lock back in the cleanup only: while the pause lasts it
refuses every admission anyway, and the job that takes the follow-up up after it re-enters
the lock, under the same run id, and gives it back.)

A retry that finds nothing left to run takes no lock of its own: it gives back the one the
phase's last admission took (its ``run.admitted`` row's token, compare-and-delete, so never a
later admission's or another run's), which is the lock the failed release left.
"""

from __future__ import annotations

from receiver.guards.policy import Admission, AdmissionRequest, GuardUnavailable
from receiver.model import GuardSpec, Verdict
from receiver.pipeline.context import Deps, RunContext, release_lock

__all__ = ["follow_up_lock_given_back", "lock_not_given_back"]


async def follow_up_lock_given_back(deps: Deps, ctx: RunContext) -> bool:
    """Give back the target lock of ``ctx``'s follow-up phase now, before the pass writes its
    end or parks. The one this pass's admission took (``release_lock``); when this pass took
    none and ran no step (a retry with nothing left to run), the one the phase's last
    admission took, if the lock still holds exactly its token (``Store.admitted_lock``,
    ``Guards.release``). True when given back, not held, or there was none; False when Redis
    did not answer (logged): the caller retries the pass (``lock_not_given_back``) rather
    than end it with the lock held. Raises GuardError (a Lua error) and StoreUnavailable."""
    if ctx.lock_release is not None:
        return await release_lock(ctx)
    if ctx.admission is not None or ctx.results or ctx.run_id is None or ctx.prior is None:
        return True
    if not any(s.phase == ctx.phase for s in ctx.prior.steps):
        return True  # a phase with no steps was never admitted: no read, no Redis call
    token = await deps.store.admitted_lock(ctx.run_id, ctx.phase)
    if not token:
        return True
    request = AdmissionRequest(ctx.run_id, ctx.rule, ctx.target, False, GuardSpec())
    try:
        if await deps.guards.release(request, Admission(True, lock_token=token)):
            ctx.log.info("gave back the target lock an earlier pass kept", phase=ctx.phase)
    except GuardUnavailable as exc:
        ctx.log.warning("could not release the target lock", phase=ctx.phase, error=str(exc))
        return False
    return True


def lock_not_given_back(deps: Deps, ctx: RunContext) -> Verdict:
    """The verdict of a follow-up pass whose target lock Redis did not take back: retried
    after ``guards_down_retry_s``, its end not written."""
    return Verdict.retry(
        deps.settings.guards_down_retry_s,
        f"guards unavailable (Redis): the target lock of the {ctx.phase} steps could not be "
        "given back, so the pass is retried",
    )
