"""The end of a run's undo (its on_resolved steps, phase 'resolve'), and telling the rule's
channel when the undo did not happen.

``RecordResolve`` is the resolve path's last stage. When the undo stopped (a step ``refused``:
a restore that found the Deployment scaled by someone else, say; ``failed``; ``interrupted``
by a worker's stop) the change the run made may still be in place, and the engineer who was
told that the remediation ran must hear that taking it back did not: ``UndoNotice`` announces
``undo_failed`` on the rule's ``notify`` channel, naming the step, what happened, the target
and the change left in place. The undo ends at that step, as a run ends at its failed one: the
on_resolved steps after it are recorded ``not_run`` (``Store.stop_undo``), and ``Close``
(resolve.py) never takes up a step after a stopped one (``context.stopped_at``), so no later pass (a
retried resolved event, a job, a carried undo) runs them. ``AdmitResolve`` (follow_up.py) calls
the notice too when the namespace policy refuses the undo outright (having ended all of it,
a step held for its approval too: ``Store.end_phase``). A step a guard only holds
(a pause, the target lock) is not news: it is tried again. Neither is an on_resolved step's
approval rejected or expired (the approval desk's notices say so).

Once per run: it goes through the run announcements' path (``Announcer.once``: the rule's
channel and events, one ``run.announced`` row, delivered or not), and a ``run.announced`` row
of ``undo_failed`` already in the run's audit trail means it was said. A retried resolved
event or ``resume_resolve`` job finds the stopped step in the stored run (``ctx.prior``) and
says it then if a crash came between the step's record and its announcement. Never folded
into the refusal digest: an undo follows a run the guards admitted, so they keep these few,
as they keep ``finished`` ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from receiver.model import Announcement, RunOutcome, StepPlan, Verdict
from receiver.pipeline.announce import Announcer
from receiver.pipeline.context import (
    STEP_AWAITING_APPROVAL,
    STOPS_RUN,
    WORKER_STOPPED,
    Deps,
    RunContext,
    possible_change,
    record_step,
)
from receiver.pipeline.lock_back import follow_up_lock_given_back, lock_not_given_back
from receiver.pipeline.marked import UNRECORDED, interruption
from receiver.store import RunRecord, StepRecord
from remediations.base import Outcome, Result

__all__ = [
    "RecordResolve",
    "StoppedUndo",
    "UndoNotice",
    "caveat",
    "stopped_undo",
    "undo_failed_text",
]

# Longest before/after shown per change in the message: the run's record has all of it.
_CHANGE_CHARS = 200


@dataclass(frozen=True, slots=True)
class StoppedUndo:
    """The on_resolved step that stopped its run's undo: ``index`` in the run's steps (after
    the run's own), its ``action``, ``outcome`` (refused, failed, interrupted) and its
    ``message`` (why, as the action or the guard said it)."""

    index: int
    action: str
    outcome: str
    message: str


def stopped_undo(
    results: Sequence[tuple[StepPlan, Result]], stored: Iterable[StepRecord] = ()
) -> StoppedUndo | None:
    """The step that stopped the undo: the first of this pass's ``results`` that stops it
    (``STOPS_RUN``), else the first stored on_resolved step (``stored``: the run's steps as
    the pass began) that ended so in an earlier pass whose announcement a crash may have cut
    off. None when the undo did not stop (done, held by a guard, waiting for an approval)."""
    for step, result in results:
        if result.outcome in STOPS_RUN:
            return StoppedUndo(step.index, step.action, str(result.outcome), result.message)
    for record in sorted(stored, key=lambda s: s.idx):
        if record.phase == "resolve" and record.outcome in STOPS_RUN:
            return StoppedUndo(record.idx, record.action, record.outcome, record.message)
    return None


def caveat(run: RunRecord) -> str:
    """What every on_resolved step of ``run`` says after its own message when a run step may
    have acted without ending ok (``possible_change``): left by a stopped worker
    (``WORKER_STOPPED``), or failed after its request may have reached its system. The engine
    planned the undo because that step may have acted, so the change it undoes may not have
    happened. "" otherwise."""
    why = []
    for s in run.steps:
        if s.phase != "run" or not possible_change(s.outcome, s.may_have_acted):
            continue
        if s.outcome in WORKER_STOPPED:
            why.append(
                f"step {s.idx} ({s.action}) was interrupted: {interruption(s.outcome, s.message)}"
            )
        else:
            why.append(
                f"step {s.idx} ({s.action}) failed after its request may have reached its system"
            )
    if not why:
        return ""
    return (
        f"planned because run {'; '.join(why)}; so it may not have acted and the change this "
        "step undoes may not have happened"
    )


def _shown(values: Mapping[str, Any]) -> str:
    text = json.dumps(dict(values), sort_keys=True, default=str)
    return text if len(text) <= _CHANGE_CHARS else text[: _CHANGE_CHARS - 1] + "…"


def _left_in_place(steps: Iterable[StepRecord]) -> str:
    """What the run's own steps changed (those that ended ok and said before/after), which
    the undo was to take back; "" when none says it."""
    changes = [
        f"{s.action} {_shown(s.before or {})} → {_shown(s.after or {})}"
        for s in sorted(steps, key=lambda s: s.idx)
        if s.phase == "run" and s.outcome == Outcome.OK and (s.before or s.after)
    ]
    return "; ".join(changes)


_WHAT_HAPPENED: Mapping[str, str] = {
    Outcome.REFUSED: "was refused",
    Outcome.FAILED: "failed",
}


def undo_failed_text(
    stopped: StoppedUndo, steps: Iterable[StepRecord], target: str, caveat: str = ""
) -> str:
    """The text of an ``undo_failed`` announcement (plain text, one paragraph): which
    on_resolved step stopped the undo and why (``stopped``), the change of the run's own
    ``steps`` left in place, the ``target`` (``Target.key``) to check, and the ``caveat``
    when the run's change may itself not have happened (``RunContext.caveat``)."""
    happened = _WHAT_HAPPENED.get(stopped.outcome, stopped.outcome)
    if stopped.outcome == Outcome.INTERRUPTED:
        # What the step's own message says stopped it: a worker, or a store outage that lost
        # its record in the process that ran it (``marked.UNRECORDED``).
        cause = interruption(stopped.outcome, stopped.message)
        happened = (
            f"was interrupted ({cause})"
            if stopped.message.startswith(UNRECORDED)
            else f"was interrupted ({cause}: it may have acted in part, or not)"
        )
    why = f": {stopped.message}" if stopped.message else ""
    parts = [
        f"The undo did not happen: on_resolved step {stopped.action} (step {stopped.index} of "
        f"the run) {happened}{why}."
    ]
    change = _left_in_place(steps)
    parts.append(
        f"What the run changed was not taken back: {change}."
        if change
        else "What the run's steps changed was not taken back."
    )
    if caveat:
        parts.append(f"(The undo was {caveat}.)")
    parts.append(
        f"Check {target}: decide whether that change should stay, and take it back by hand "
        "if not; remediator will not try again."
    )
    return " ".join(parts)


class UndoNotice:
    """``await notice(ctx, stopped)``: announce ``undo_failed`` for the resolve-path run of
    ``ctx`` once (``Announcer.once``), when ``stopped`` says the undo stopped and the rule's
    ``notify`` asks for it. Never raises for a delivery problem (the announcer records it)."""

    def __init__(self, announce: Announcer) -> None:
        self._announce = announce

    async def __call__(self, ctx: RunContext, stopped: StoppedUndo | None) -> None:
        if stopped is None:
            return
        ctx.log.warning(
            "undo stopped: the run's change may still be in place",
            step=stopped.index,
            action=stopped.action,
            outcome=stopped.outcome,
        )
        steps = ctx.prior.steps if ctx.prior is not None else ()
        text = undo_failed_text(stopped, steps, ctx.target.key, ctx.caveat)
        await self._announce.once(ctx, Announcement.UNDO_FAILED, outcome=stopped.outcome, text=text)


class RecordResolve:
    """record (resolve path): the on_resolved steps ran as far as they could.

    A step that needs an approval holds itself and the steps after it (``awaiting_approval``:
    the approval's decision, or its expiry, takes them up again through a ``resume_run`` job,
    ``jobs.py``); a rejected or expired approval ends them without acting
    (``store.approval_ends``). The run keeps its outcome whatever its undo does: its alert
    resolved. An undo that stopped (a step refused, failed or interrupted) ends there, as a
    run does: the on_resolved steps after that step are recorded ``not_run``
    (``Store.stop_undo``), and it is announced (``UndoNotice``)."""

    name = "record"

    def __init__(self, deps: Deps, notice: UndoNotice) -> None:
        self._deps = deps
        self._notice = notice

    async def __call__(self, ctx: RunContext) -> Verdict:
        outcome = ctx.prior.outcome if ctx.prior is not None else RunOutcome.VERIFIED
        if not await follow_up_lock_given_back(self._deps, ctx):
            # Ended or parked now, the undo would leave the lock to the target until its TTL.
            return lock_not_given_back(self._deps, ctx)
        halted = any(r.outcome in STOPS_RUN for _, r in ctx.results)
        if ctx.awaiting is not None and not halted:
            await record_step(
                self._deps,
                ctx,
                ctx.awaiting,
                STEP_AWAITING_APPROVAL,
                "this on_resolved step needs an engineer's approval",
            )
            ctx.log.info("on_resolved step waits for approval", step=ctx.awaiting.index)
            return Verdict.park(outcome, "an on_resolved step needs an engineer's approval")
        stored = ctx.prior.steps if ctx.prior is not None else ()
        stopped = stopped_undo(ctx.results, stored)
        if stopped is not None:
            # As a run's steps after a failed one: the rest of the undo never runs, and a later
            # pass (a retried event, a job, a carried undo) must not find it pending.
            assert ctx.run_id is not None
            ended = await self._deps.store.stop_undo(ctx.run_id)
            if ended:
                ctx.log.info("undo ended at its stopped step", step=stopped.index, not_run=ended)
        await self._notice(ctx, stopped)
        return Verdict.stop(outcome, "")
