"""Ending some of a run's steps, saying why (``end_steps``): the one way its follow-ups and
its resolution end steps that will not run.

A run's steps are ended that way when its alert resolved before they ran
(``escalation_ends.py``, ``resolved_runs.py``), when its undo or escalation stopped at a step
(``phase_stop.py``), and when the alert firing again withdrew its undo (``withdrawal.py``).
Each writes the same rows: the step's new outcome and message, its ``step`` audit row, its
approvals in the states given ``cancelled`` with the reason, their ``approval.cancelled``
rows. The caller chooses the steps (under the run's row lock, the one every writer of a run's
ends takes) and writes its own row saying what ended them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from receiver.model import ApprovalRecord
from receiver.store.approvals import approval_audit, cancel_approvals
from receiver.store.audit import append_in_tx
from receiver.store.steps import stored_step_audit

__all__ = ["StepEnd", "end_steps"]


@dataclass(frozen=True, slots=True)
class StepEnd:
    """One step to end: its index, action and params (the JSON text the row holds, as
    ``params::text`` reads it), and the outcome and message it ends with."""

    idx: int
    action: str
    params: str
    outcome: str
    message: str


async def end_steps(
    conn: Any,
    run_id: str,
    fingerprint: str | None,
    phase: str,
    steps: Sequence[StepEnd],
    *,
    approvals_of: Sequence[int],
    reason: str,
    states: Sequence[str],
) -> list[ApprovalRecord]:
    """End ``steps`` of ``phase`` of run ``run_id`` inside the caller's transaction: each
    takes its outcome and message (``finished_at`` now), with a ``step`` audit row, in index
    order; then the approvals of the steps ``approvals_of`` (indexes, the ended ones and any
    other the caller names) in one of ``states`` ('pending', 'approved') become ``cancelled``
    with ``reason`` (one decided already keeps who decided and when), each with an
    ``approval.cancelled`` row. Returns the approvals cancelled, to be announced. The steps
    are the caller's to choose, locked with the run (a step changed since it was read would
    be overwritten); nothing is written for an empty list."""
    ordered = sorted(steps, key=lambda s: s.idx)
    if ordered:
        await conn.execute(
            """UPDATE steps s SET outcome = e.outcome, message = e.message,
                                  finished_at = remediator_now()
               FROM unnest($3::int[], $4::text[], $5::text[]) AS e(idx, outcome, message)
               WHERE s.run_id = $1::uuid AND s.phase = $2 AND s.idx = e.idx""",
            run_id,
            phase,
            [s.idx for s in ordered],
            [s.outcome for s in ordered],
            [s.message for s in ordered],
        )
    for step in ordered:
        # Params edited to be unreadable end the step all the same (``params_unreadable``).
        data = stored_step_audit(
            phase, step.idx, step.action, step.outcome, step.message, step.params
        )
        await append_in_tx(conn, "step", run_id, fingerprint, data)
    cancelled = await cancel_approvals(conn, run_id, approvals_of, reason, states)
    for approval in cancelled:
        data = approval_audit(approval, reason=reason)
        await append_in_tx(conn, "approval.cancelled", run_id, fingerprint, data)
    return cancelled
