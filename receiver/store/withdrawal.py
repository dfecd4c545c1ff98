"""A held undo withdrawn because its alert fired again (``Withdrawals.withdraw_undo``).

An on_resolved step that needs an approval waits for it after the alert resolved
(``awaiting_approval``). If the alert fires again meanwhile (a later episode, or a re-fire of
the same one), approving that step would take the remediation back while the condition is back,
and the new run, planned while the change was still in place, changed nothing and has no undo
of its own. So the firing withdraws it: its pending approval is cancelled (with the reason, for
the approver), the held step and the on_resolved steps after it are recorded ``not_run``, and
the run's undo is deferred (``undo_deferred``) to the alert's next resolution, where
``Verification.carry_undo`` plans it again (and its approval is asked for again).
"""

from __future__ import annotations

import json
from typing import Any

from receiver.model import ApprovalRecord
from receiver.store.approvals import APPROVAL_COLUMNS, approval_audit, approval_from_row
from receiver.store.audit import append_in_tx
from receiver.store.database import Database
from receiver.store.steps import step_audit

__all__ = ["WITHDRAWN", "Withdrawals"]

# What the approver and the step's record are told.
WITHDRAWN = "the alert fired again; this undo is carried to its next resolution"


class Withdrawals(Database):
    """Withdrawing held undos (mixin of ``Store``)."""

    async def withdraw_undo(self, run_id: str, *, event_id: int) -> list[ApprovalRecord] | None:
        """The alert of closed run ``run_id`` fired again (event ``event_id``) while an
        on_resolved step of it waits for its approval: in one transaction, under the run's row
        lock (the one ``close_run``, ``record_undo`` and ``carry_undo`` take), the run's
        on_resolved steps still ``pending`` or ``awaiting_approval`` become ``not_run``
        (``WITHDRAWN``), their pending approvals ``cancelled`` (``reason``: ``WITHDRAWN``), and
        the run ``undo_deferred``, audited (``run.undo_withdrawn``). Returns the cancelled
        approvals (to be announced); None when nothing was withdrawn: the run is open, its undo
        deferred already, or no step of it is held any more (run, or started: ``start_step``
        claims a step under the same condition, so a step is either withdrawn or acted on,
        never both)."""
        async with self._tx() as conn:
            fingerprint = await conn.fetchval(
                """SELECT fingerprint FROM runs
                   WHERE id = $1::uuid AND resolved_at IS NOT NULL AND NOT undo_deferred
                   FOR UPDATE""",
                run_id,
            )
            if fingerprint is None:
                return None
            message = f"withdrawn: {WITHDRAWN} (event {event_id})"
            steps = await conn.fetch(
                """UPDATE steps SET outcome = 'not_run', message = $2,
                                    finished_at = remediator_now()
                   WHERE run_id = $1::uuid AND phase = 'resolve'
                     AND outcome IN ('pending', 'awaiting_approval')
                   RETURNING idx, action, params::text AS params""",
                run_id,
                message,
            )
            if not steps:
                return None
            rows = await conn.fetch(
                f"""UPDATE approvals a SET state = 'cancelled', decided_at = remediator_now(),
                                         reason = $3
                    WHERE a.run_id = $1::uuid AND a.state = 'pending'
                      AND a.step_idx = ANY ($2::int[])
                    RETURNING {APPROVAL_COLUMNS}""",
                run_id,
                [s["idx"] for s in steps],
                WITHDRAWN,
            )
            await conn.execute("UPDATE runs SET undo_deferred = true WHERE id = $1::uuid", run_id)
            cancelled = [approval_from_row(r) for r in rows]
            for step in sorted(steps, key=_idx):
                data = step_audit(
                    "resolve",
                    step["idx"],
                    step["action"],
                    "not_run",
                    message,
                    json.loads(step["params"]),
                )
                await append_in_tx(conn, "step", run_id, fingerprint, data)
            for approval in cancelled:
                await append_in_tx(
                    conn,
                    "approval.cancelled",
                    run_id,
                    fingerprint,
                    approval_audit(approval, reason=WITHDRAWN),
                )
            await append_in_tx(
                conn,
                "run.undo_withdrawn",
                run_id,
                fingerprint,
                {
                    "event_id": event_id,
                    "steps": sorted(s["idx"] for s in steps),
                    "approvals": [a.id for a in cancelled],
                    "reason": WITHDRAWN,
                },
            )
        return cancelled


def _idx(row: Any) -> int:
    idx: int = row["idx"]
    return idx
