"""A step taken up after its alert resolved: ended, not run.

For an escalation (receiver.store.escalation_ends): once the alert a run escalated on has
resolved, no on_failed step that acts on a system, or waits for an approval, begins; a
``notify`` step that needs none still tells people of the failure. The resolution is another
worker's and not ordered with the job that runs the ladder, so the ladder looks where it can
meet it: when a job takes the escalation up (``Escalation``: a step held by a pause or the
target lock, the job of an approval's decision, the job the resolution queues when it cancels
the ladder's pending approval) and, for an approved step, once more after its preview's round
trip to the target (the approve stage), so that only store writes stand between the look and
the step acting. Both call ``escalation_overtaken``.

For a run's own steps (receiver.store.resolved_runs): once its alert has resolved, none of its
steps left begins, and the run ends ``cancelled``. The same two looks: when its ``resume_run``
job takes it up (``JobHandler``: an approval given, the target lock's wait, a worker that
stopped) and after an approved step's preview. Both call ``run_overtaken``.
"""

from __future__ import annotations

from typing import Any

from receiver.guards.policy import GuardError
from receiver.model import RunOutcome
from receiver.pipeline.budget import BudgetRefund
from receiver.pipeline.context import Deps, RunContext
from receiver.pipeline.lock_release import release_or_queue
from receiver.store import LeaseFence, StoreUnavailable
from remediations.notify.action import Notify
from remediations.targets import Target

__all__ = ["MESSAGES", "escalation_overtaken", "release_admitted_lock", "run_overtaken"]

# The actions that only tell people: left to run once the alert resolved (when they need no
# approval), the failure they report having happened.
MESSAGES = (Notify.name,)


async def escalation_overtaken(deps: Deps, ctx: RunContext) -> bool:
    """Whether the alert of ``ctx``'s escalation (phase ``on_failed``) has resolved, in which
    case its steps that act or need an approval are ended now (``Store.end_resolved_escalation``:
    ``not_run`` or ``cancelled``, their approvals, pending or approved, ``cancelled``;
    audited), the approvers told, and a budget slot the escalation drew of its own given
    back when none of its steps acted (``BudgetRefund.follow_up_ended``; Redis or the store
    unreachable: logged, and the ``finish_end`` job the end's transaction queued gives it back
    later, receiver.store.finish). ``ctx.steps`` and
    ``ctx.runnable`` then keep only the steps left to run (messages, and a step a worker
    stopped in, which the step runner records interrupted). One transaction; nothing is
    written while the alert still fires. False also when nothing was left to end (a retry:
    nothing is given back twice)."""
    assert ctx.run_id is not None
    ended = await deps.store.end_resolved_escalation(ctx.run_id, MESSAGES)
    if ended is None:
        return False
    gone = set(ended.steps)
    ctx.steps = tuple(s for s in ctx.steps if s.index not in gone)
    ctx.runnable = tuple(s for s in ctx.runnable if s.index not in gone)
    ctx.log.info("escalation overtaken: the alert resolved", ended=ended.steps)
    if ended.approvals and deps.approvals is not None:
        await deps.approvals.phase_ended(ended.approvals)
    # A slot the escalation drew of its own comes back when none of its steps acted, as when
    # its approval ends it; only after an ending written just now, so a retry gives none back.
    await BudgetRefund(deps.store, deps.guards, deps.registry).follow_up_ended(ctx)
    return True


async def release_admitted_lock(
    deps: Deps, run_id: str, rule: str, target: Target, log: Any
) -> bool:
    """Release ``target``'s lock if it still holds exactly the token the last admission of
    run ``run_id``'s own steps (phase 'run') took it with (``Store.admitted_lock``,
    ``Guards.release``: compare-and-delete); whether it did.

    For a pass that has just ended the run without holding the lock itself: the worker that
    was admitted died holding it (SIGKILL mid-step), and the run was then ended by its
    alert's resolution or refused as it was taken up again. Before, the lock stayed until
    ``guards.lock_ttl`` and every later run on the target waited it out. Releasing any lock
    of the run would be unsafe: its on_resolved and on_failed steps are admitted under the
    same run id, each with a token of its own, which this leaves alone, as it leaves a later
    admission's and another run's. Redis unreachable: a ``release_lock`` job gives it back
    once Redis answers (``lock_release.release_or_queue``; before, the lock held the target
    until its TTL though the run had ended). The store unreachable: logged, the lock ends
    with its TTL.

    A run the store never recorded as admitted (its worker died after Redis admitted it and
    before the admission was written: a run taken up after waiting for the lock, then ended
    by its alert's resolution) has no token to release by: the lock is released if the run
    holds it under any token (``Guards.release_run``). Before, it stayed until its TTL."""
    try:
        token = await deps.store.admitted_lock(run_id)
        if token == "":
            return False
        released = await release_or_queue(deps, run_id, rule, target, token, log) is True
    except (GuardError, StoreUnavailable) as exc:
        log.warning("could not release the lock the run's admission took", error=str(exc))
        return False
    if released:
        log.info("released the target lock the run's dead worker held")
    return released


async def run_overtaken(
    deps: Deps,
    run_id: str,
    rule: str,
    target: Target,
    log: Any,
    lease: LeaseFence | None = None,
) -> bool:
    """Whether the alert of run ``run_id`` (of rule ``rule``), still open, has resolved, in
    which case it is ended now (``Store.end_resolved_run``: ``cancelled``, its held step
    ``not_run`` or ``cancelled``, its approvals, pending or approved, ``cancelled``, its
    other steps left ``not_run``; audited), counted, the approvers told (when an approval desk
    is configured), and the budget slot it never used given back (``BudgetRefund``, desk or
    none: only when none of its steps may have changed anything), and the target lock its
    last admission took released when it still holds it (``release_admitted_lock``: a
    worker that died mid-step). One transaction; nothing is written while the alert still
    fires, or once the run has ended. A failure to give the slot back is logged: the slot
    leaves the window with time. ``lease``: the claim of the
    job or event that looks; LeaseLost, nothing written, once its owner lost it. The end's
    transaction queues a ``finish_end`` job that does the refund, the notices and the
    release once more, later, when Redis, the channel or this process failed them here
    (receiver.store.finish: each idempotent)."""
    ended = await deps.store.end_resolved_run(run_id, lease)
    if ended is None:
        return False
    log.info("run ended: its alert resolved before its steps left ran", error=ended.error)
    deps.metrics.run_finished(rule, RunOutcome.CANCELLED)
    # After the ending committed: released before, a run whose alert had not resolved after
    # all would be left without its lock. A death in between leaves it to its TTL.
    await release_admitted_lock(deps, run_id, rule, target, log)
    # With or without an approval desk: a run admitted, whose worker stopped before any step
    # began, kept its slot when none was configured (the desk's hook was the only way back).
    # Given back only when its records say no step can have acted (BudgetRefund).
    # Only after an ending written just now, so a retry gives nothing back twice.
    try:
        await BudgetRefund(deps.store, deps.guards, deps.registry)(run_id, log=log)
    except Exception as exc:  # the slot is kept: it leaves the window with time
        log.warning("budget slot not given back", error=str(exc))
    if ended.approvals and deps.approvals is not None:
        await deps.approvals.phase_ended(ended.approvals)
    return True
