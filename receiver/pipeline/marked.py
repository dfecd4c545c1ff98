"""What a step records when its try could not mark it ``started`` (``StepRunner``, steps.py):
the mark another attempt left, or a record another attempt wrote meanwhile."""

from __future__ import annotations

from receiver.pipeline.context import STEP_STARTED, RunContext
from receiver.store import StepStart
from receiver.store.steps import ENDED_WHILE_STARTED
from remediations.base import Outcome, Result

__all__ = ["UNRECORDED", "interruption", "not_started"]

# How an interrupted step's message begins when this process ran it and the store was out of
# reach as its result was written (``not_started``); the run's error says so too (record.py).
UNRECORDED = "the store was unreachable when this step's result was to be recorded"

_OUTCOMES = frozenset(o.value for o in Outcome)


def interruption(outcome: str, message: str) -> str:
    """Why a step that reads ``outcome`` (``interrupted``, or still ``started``) has no result
    of its own, as its ``message`` tells it, for texts about it (the undo's notice and caveat,
    receiver.pipeline.undo): its record lost to a store outage in the process that ran it
    (``UNRECORDED``, written by ``not_started``), a worker that stopped in it, or, still
    ``started`` or ended so by its run's end (``ENDED_WHILE_STARTED``), no result recorded
    (either may be why). Read from the message the step already has: no write of its own."""
    if message.startswith(UNRECORDED):
        return (
            "the store was unreachable when its result was to be recorded, not a stopped "
            "worker; its message says how its call ended"
        )
    if outcome == STEP_STARTED or message.startswith(ENDED_WHILE_STARTED):
        return "its result was never recorded (its worker stopped, or the store was out of reach)"
    return "a worker stopped while it ran"


def not_started(
    ctx: RunContext, start: StepStart, ran: Result | None = None
) -> tuple[Result, bool]:
    """What a step that could not be marked started records, and whether to record it: a mark
    an earlier attempt left is ``interrupted`` (recorded); a step another attempt finished
    meanwhile keeps its record (not written again). ``ran``: how this process's own earlier
    try at the step ended, when the store was unreachable as its record was written: the
    mark is that try's (no other attempt can mark a started step), and the message says so
    rather than blame a stopped worker. Still ``interrupted``: the run fails and someone
    looks, as for any step whose record was lost."""
    if start.outcome == STEP_STARTED and ran is not None:
        return (
            Result(
                Outcome.INTERRUPTED,
                f"{UNRECORDED} (its call had ended {ran.outcome}: {ran.message}); not run "
                "again, so as not to act twice or go past its cap; check "
                f"{ctx.target.key} by hand",
            ),
            True,
        )
    if start.outcome == STEP_STARTED:
        since = f" at {start.started_at.isoformat()}" if start.started_at else ""
        return (
            Result(
                Outcome.INTERRUPTED,
                f"a worker stopped while this step ran ({start.message}{since}): it may have "
                "acted, in part or in full; not run again, so as not to act twice or go past "
                f"its cap; check {ctx.target.key} by hand",
            ),
            True,
        )
    if start.outcome in _OUTCOMES:
        return Result(Outcome(start.outcome), start.message), False
    why = f"step is {start.outcome}" if start.outcome else "step is not in the store"
    return Result(Outcome.REFUSED, f"not run: the {why} ({start.message})"), False
