"""An escalation step taken up after its alert resolved: ended, not run.

The rule (receiver.store.escalation_ends): once the alert a run escalated on has resolved, no
on_failed step that acts on a system, or waits for an approval, begins; a ``notify`` step that
needs none still tells people of the failure. The resolution is another worker's and not
ordered with the job that runs the ladder, so the ladder looks where it can meet it: when a
job takes the escalation up (``Escalation``: a step held by a pause or the target lock, the
job of an approval's decision) and, for an approved step, once more after its preview's round
trip to the target (the approve stage), so that only store writes stand between the look and
the step acting. Both call ``escalation_overtaken``.
"""

from __future__ import annotations

from receiver.pipeline.context import Deps, RunContext
from remediations.notify.action import Notify

__all__ = ["MESSAGES", "escalation_overtaken"]

# The actions that only tell people: left to run once the alert resolved (when they need no
# approval), the failure they report having happened.
MESSAGES = (Notify.name,)


async def escalation_overtaken(deps: Deps, ctx: RunContext) -> bool:
    """Whether the alert of ``ctx``'s escalation (phase ``on_failed``) has resolved, in which
    case its steps that act or need an approval are ended now (``Store.end_resolved_escalation``:
    ``not_run`` or ``cancelled``, their approvals, pending or approved, ``cancelled``;
    audited) and the approvers told. ``ctx.steps`` and ``ctx.runnable`` then keep only the
    steps left to run (messages, and a step a worker stopped in, which the step runner records
    interrupted). One transaction; nothing is written while the alert still fires. False
    also when nothing was left to end."""
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
    return True
