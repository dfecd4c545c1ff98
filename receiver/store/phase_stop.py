"""A run's follow-up that stopped at one of its steps (``PhaseStops.stop_phase``).

A run's steps stop at the first that fails, is refused or was interrupted: the ones after it
are ``not_run`` and nothing runs them later. Its follow-ups end the same way:

- its undo (its on_resolved steps, phase ``resolve``): once one of them stopped, the change it
  was to take back may still be in place, an engineer is told to check the target by hand
  ("remediator will not try again"), and a later step acting on a state nobody has looked at
  would undo part of a change whose other part stayed. A retried resolved event, a
  ``resume_resolve`` job or a carried undo then finds nothing left to run
  (``Verification.carry_undo`` does not plan a stopped undo again either);
- its escalation (its on_failed steps, phase ``on_failed``): a ladder climbed past a rung that
  failed acts on a state nobody has looked at (the page that did not go out, the step that may
  have acted in part), and a later ``resume_run`` job of the run (an approval's decision, the
  escalation's own job claimed again after a worker's lease ran out) then finds nothing left.

So the steps of that phase after the stopped one become ``not_run``, saying which step stopped
it. A refusal that waiting cannot lift (the namespace policy: ``PhaseStops.end_phase``) ends
every step of the phase not done yet, one held for its approval before the refused step too:
the phase is over, and a step of it that an approval let through later would act alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.model import ApprovalRecord
from receiver.store.audit import append_in_tx
from receiver.store.database import Database
from receiver.store.finish import drew_budget, queue_finish
from receiver.store.step_ends import StepEnd, end_steps
from receiver.store.steps import NOT_RUN

__all__ = [
    "STOPPED_ESCALATION",
    "STOPPED_UNDO",
    "STOPPERS",
    "Ended",
    "PhaseStops",
    "stopped_step",
]

# The outcomes of a step that end the steps after it: a run's, and a follow-up's here (the
# pipeline's ``STOPS_RUN`` is made from these).
STOPPERS = ("failed", "refused", "interrupted")

# What the steps after the stopped one say, before which step it was.
STOPPED_UNDO = "not run: an earlier undo step failed"
STOPPED_ESCALATION = "not run: an earlier escalation step failed"


@dataclass(frozen=True, slots=True)
class _Follow:
    """How a follow-up phase's end reads: the steps' message, the audit kind, its name."""

    message: str
    kind: str
    name: str


_PHASES = {
    "resolve": _Follow(STOPPED_UNDO, "run.undo_stopped", "undo"),
    "on_failed": _Follow(STOPPED_ESCALATION, "run.escalation_stopped", "escalation"),
}


@dataclass(frozen=True, slots=True)
class Ended:
    """What ending a follow-up did: the indexes of the steps recorded ``not_run`` now, and the
    approvals it cancelled (to be announced)."""

    steps: list[int]
    approvals: list[ApprovalRecord]


async def stopped_step(conn: Any, run_id: str, phase: str) -> Any:
    """The first step of ``phase`` of the run that stopped it (idx, action, outcome), or None,
    inside the caller's transaction."""
    return await conn.fetchrow(
        """SELECT idx, action, outcome FROM steps
           WHERE run_id = $1::uuid AND phase = $2 AND outcome = ANY ($3::text[])
           ORDER BY idx LIMIT 1""",
        run_id,
        phase,
        list(STOPPERS),
    )


class PhaseStops(Database):
    """Ending a run's undo or escalation at its stopped step (mixin of ``Store``)."""

    async def stop_undo(self, run_id: str) -> list[int]:
        """``stop_phase`` of the run's undo (its on_resolved steps)."""
        return await self.stop_phase(run_id, "resolve")

    async def stop_escalation(self, run_id: str) -> list[int]:
        """``stop_phase`` of the run's escalation (its on_failed steps)."""
        return await self.stop_phase(run_id, "on_failed")

    async def stop_phase(self, run_id: str, phase: str) -> list[int]:
        """End the follow-up ``phase`` ('resolve' or 'on_failed') of run ``run_id`` at its
        first step that failed, was refused or was interrupted: in one transaction, under the
        run's row lock (the one ``record_undo``, ``carry_undo`` and the withdrawals take), the
        steps of ``phase`` after it still ``pending`` or ``awaiting_approval`` become
        ``not_run`` (``STOPPED_UNDO`` or ``STOPPED_ESCALATION``, naming the step), a pending
        approval of one of them ``cancelled``, each audited, with a ``run.undo_stopped`` or
        ``run.escalation_stopped`` row. Returns the indexes ended now: none when no step
        stopped it or nothing is left after it (a retry changes nothing)."""
        return (await self._stop(run_id, phase, why=None)).steps

    async def end_phase(self, run_id: str, phase: str, why: str) -> Ended:
        """``stop_phase`` for a refusal that waiting cannot lift (``why``: the guard's words),
        recorded on the phase's first step refused: every step of ``phase`` still ``pending``
        or ``awaiting_approval`` becomes ``not_run``, those before that step too (one held for
        its approval), and the approvals of those steps and of the refused one, pending or
        approved (not used: the steps did not run), ``cancelled`` with the reason
        (``decided_by``, ``decided_at`` kept). Returns what it ended, the approvals to be
        announced; nothing when no step of the phase is refused or nothing is left open."""
        return await self._stop(run_id, phase, why=why)

    async def _stop(self, run_id: str, phase: str, *, why: str | None) -> Ended:
        """The body of both: ``why`` None ends the steps after the stopper (``stop_phase``),
        else every open one (``end_phase``)."""
        follow = _PHASES[phase]
        nothing = Ended([], [])
        async with self._tx() as conn:
            fingerprint = await conn.fetchval(
                "SELECT fingerprint FROM runs WHERE id = $1::uuid FOR UPDATE", run_id
            )
            stopped = None if fingerprint is None else await stopped_step(conn, run_id, phase)
            if stopped is None:
                return nothing
            step = f"step {stopped['idx']} ({stopped['action']})"
            message = (
                f"{follow.message} ({step} {stopped['outcome']}); the {follow.name} ended there"
                if why is None
                else f"not run: the {follow.name} ended at {step}, {why}"
            )
            # Locked as an UPDATE would lock them: one a step runner changed meanwhile is
            # read again, and left out once it is no longer open.
            rows = await conn.fetch(
                """SELECT idx, action, params::text AS params FROM steps
                   WHERE run_id = $1::uuid AND phase = $2 AND ($4 OR idx > $3)
                     AND outcome IN ('pending', 'awaiting_approval')
                   ORDER BY idx
                   FOR UPDATE""",
                run_id,
                phase,
                stopped["idx"],
                why is not None,
            )
            ends = [StepEnd(r["idx"], r["action"], r["params"], NOT_RUN, message) for r in rows]
            ended = [e.idx for e in ends]
            # None is asked for after a stopped step now; one asked before (a retry that went
            # on past the stop) is no longer wanted. Ended for good, an approved one of a step
            # that never ran (the refused one's too) can never be used either.
            cancelled = await end_steps(
                conn,
                run_id,
                fingerprint,
                phase,
                ends,
                approvals_of=ended if why is None else [*ended, stopped["idx"]],
                reason=message,
                states=["pending"] if why is None else ["pending", "approved"],
            )
            # The approvers' notices, and a slot the escalation drew of its own (given back
            # when none of its steps may have acted), sent and given by the pass at once and
            # by this job when it cannot (finish.py): before, a crash or Redis failing after
            # the commit kept the slot for the window. Queued even when nothing was left
            # after the stopped step: the stop itself ended the escalation.
            refund = phase == "on_failed" and await drew_budget(conn, run_id, phase)
            if cancelled or refund:
                notices = [a.id for a in cancelled]
                await queue_finish(conn, run_id, refund=refund, notices=notices)
            if not ends and not cancelled:
                return nothing
            await append_in_tx(
                conn,
                follow.kind,
                run_id,
                fingerprint,
                {
                    "step": stopped["idx"],
                    "action": stopped["action"],
                    "outcome": stopped["outcome"],
                    "not_run": ended,
                },
            )
        return Ended(ended, cancelled)
