"""An on_resolved step taken up to act after its alert fired again: withdrawn, not run.

The rule (receiver.episodes): an undo step that no worker has started yet must not run once
its alert fires again; it waits for the alert's next resolution. A firing withdraws the undo
it can see waiting (its approval pending: ``Store.withdraw_undo``). What it cannot see is
looked at when a worker takes the step up: an approved step (the approve stage, after the
preview's round trip) and any step taken up again after a guard held it or its approval was
decided (``AdmitResolve``, once the guards let it through: as close to acting as a step with
no approval gets, and a take-up the guards hold again pays no query; on a take-up by a job or
a later event, never on the first pass of a fresh resolution, which is itself the alert's
latest occurrence). Both call ``withdrawn_on_refire``.
"""

from __future__ import annotations

from receiver.pipeline.context import STEP_STARTED, Deps, RunContext

__all__ = ["withdrawn_on_refire", "withdrawn_on_take_up"]


async def withdrawn_on_refire(deps: Deps, ctx: RunContext) -> bool:
    """Whether the alert of ``ctx``'s closed run fired again since it resolved, in which case
    its undo is withdrawn now (``Store.withdraw_refired_undo``: its pending and held
    on_resolved steps ``not_run``, their approvals ``cancelled``, the undo deferred to the
    next resolution, or carried at once if that resolution came already) and the approvers
    told, as a firing does when the approval is still pending. One transaction (the run's row
    lock, the alert's events since its firing); nothing more when the alert is quiet."""
    assert ctx.run_id is not None
    withdrawn = await deps.store.withdraw_refired_undo(ctx.run_id)
    if withdrawn is None:
        return False
    ctx.log.info("undo withdrawn: the alert fired again", approvals=len(withdrawn))
    if deps.approvals is not None:
        await deps.approvals.withdrawn(withdrawn)
    return True


async def withdrawn_on_take_up(deps: Deps, ctx: RunContext) -> bool:
    """``AdmitResolve``'s look, once the guards admitted the steps: whether the on_resolved
    steps of ``ctx``, taken up again (by a ``resume_resolve`` or ``resume_run`` job, or an
    event finishing a run's pending steps: ``ctx.resolving`` is None), were withdrawn because
    the alert fired again since it resolved (``withdrawn_on_refire``), leaving nothing to run.
    The first pass of a resolution (``ctx.resolving`` set: the run's own, or a carried undo's)
    does not look: that resolution is the alert's latest occurrence, and a storm's events pay
    no query.

    Withdrawn, ``ctx`` keeps only the steps a worker had started and stopped in (the
    withdrawal leaves those; the step runner records them interrupted without acting)."""
    if ctx.phase != "resolve" or ctx.resolving is not None:
        return False
    if not await withdrawn_on_refire(deps, ctx):
        return False
    started = {
        s.idx
        for s in (ctx.prior.steps if ctx.prior is not None else ())
        if s.phase == ctx.phase and s.outcome == STEP_STARTED
    }
    ctx.steps = tuple(s for s in ctx.steps if s.index in started)
    ctx.runnable = tuple(s for s in ctx.runnable if s.index in started)
    return not ctx.runnable
