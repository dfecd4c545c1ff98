"""An undo that stopped at one of its steps (``UndoStops.stop_undo``).

A run's steps stop at the first that fails, is refused or was interrupted: the ones after it
are ``not_run`` and nothing runs them later. A run's undo (its on_resolved steps, phase
``resolve``) ends the same way: once one of them stopped, the change it was to take back may
still be in place, an engineer is told to check the target by hand ("remediator will not try
again"), and a later step acting on a state nobody has looked at would undo part of a change
whose other part stayed. So the on_resolved steps after the stopped one become ``not_run``,
saying which step stopped the undo; a retried resolved event, a ``resume_resolve`` job or a
carried undo then finds nothing left to run (``Verification.carry_undo`` does not plan a
stopped undo again either).
"""

from __future__ import annotations

import json
from typing import Any

from receiver.store.approvals import APPROVAL_COLUMNS, approval_audit, approval_from_row
from receiver.store.audit import append_in_tx
from receiver.store.database import Database
from receiver.store.steps import NOT_RUN, step_audit

__all__ = ["STOPPED_UNDO", "UNDO_STOPPERS", "UndoStops", "stopped_step"]

# The outcomes of an on_resolved step that end its run's undo (``STOPS_RUN`` in the pipeline).
UNDO_STOPPERS = ("failed", "refused", "interrupted")

# What the steps after the stopped one say, before which step it was.
STOPPED_UNDO = "not run: an earlier undo step failed"


async def stopped_step(conn: Any, run_id: str) -> Any:
    """The first on_resolved step of the run that stopped its undo (idx, action, outcome), or
    None, inside the caller's transaction."""
    return await conn.fetchrow(
        """SELECT idx, action, outcome FROM steps
           WHERE run_id = $1::uuid AND phase = 'resolve' AND outcome = ANY ($2::text[])
           ORDER BY idx LIMIT 1""",
        run_id,
        list(UNDO_STOPPERS),
    )


class UndoStops(Database):
    """Ending an undo at its stopped step (mixin of ``Store``)."""

    async def stop_undo(self, run_id: str) -> list[int]:
        """End the undo of run ``run_id`` at its first on_resolved step that failed, was
        refused or was interrupted: in one transaction, under the run's row lock (the one
        ``record_undo``, ``carry_undo`` and the withdrawals take), the on_resolved steps after
        it still ``pending`` or ``awaiting_approval`` become ``not_run`` (``STOPPED_UNDO``,
        naming the step), a pending approval of one of them ``cancelled``, each audited, with
        a ``run.undo_stopped`` row. Returns the indexes ended now: none when no step stopped
        the undo or nothing is left after it (a retry changes nothing)."""
        async with self._tx() as conn:
            fingerprint = await conn.fetchval(
                "SELECT fingerprint FROM runs WHERE id = $1::uuid FOR UPDATE", run_id
            )
            stopped = None if fingerprint is None else await stopped_step(conn, run_id)
            if stopped is None:
                return []
            message = (
                f"{STOPPED_UNDO} (step {stopped['idx']} ({stopped['action']}) "
                f"{stopped['outcome']}); the undo ended there"
            )
            rows = await conn.fetch(
                """UPDATE steps SET outcome = $3, message = $4, finished_at = remediator_now()
                   WHERE run_id = $1::uuid AND phase = 'resolve' AND idx > $2
                     AND outcome IN ('pending', 'awaiting_approval')
                   RETURNING idx, action, params::text AS params""",
                run_id,
                stopped["idx"],
                NOT_RUN,
                message,
            )
            if not rows:
                return []
            ended = sorted(r["idx"] for r in rows)
            # None is asked for after a stopped step now; one asked before (a retry that went
            # on past the stop) is no longer wanted.
            approvals = await conn.fetch(
                f"""UPDATE approvals a SET state = 'cancelled', decided_at = remediator_now(),
                                         reason = $3
                    WHERE a.run_id = $1::uuid AND a.state = 'pending'
                      AND a.step_idx = ANY ($2::int[])
                    RETURNING {APPROVAL_COLUMNS}""",
                run_id,
                ended,
                message,
            )
            for row in sorted(rows, key=lambda r: int(r["idx"])):
                data = step_audit(
                    "resolve",
                    row["idx"],
                    row["action"],
                    NOT_RUN,
                    message,
                    json.loads(row["params"]),
                )
                await append_in_tx(conn, "step", run_id, fingerprint, data)
            for approval in map(approval_from_row, approvals):
                await append_in_tx(
                    conn,
                    "approval.cancelled",
                    run_id,
                    fingerprint,
                    approval_audit(approval, reason=message),
                )
            await append_in_tx(
                conn,
                "run.undo_stopped",
                run_id,
                fingerprint,
                {
                    "step": stopped["idx"],
                    "action": stopped["action"],
                    "outcome": stopped["outcome"],
                    "not_run": ended,
                },
            )
        return ended
