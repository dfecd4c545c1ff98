"""An escalation that its alert's resolution overtook (``EscalationEnds.end_resolved_escalation``).

A run's on_failed steps exist because its verification failed while the alert fired. Once
that alert has resolved (``RESOLVED_SQL``, the escalated branch: the run's own occurrence when
it did not resolve in time, the re-fire when it recurred), a step of the ladder that acts on a
system would change something after the alert was over, and nothing would take it back: the
run's on_resolved steps were planned at the resolution, from what had been done by then. An
approval given while the alert still fired was for a step that would have acted then.

So every step of the ladder not begun yet ends, except those that only tell people (a
``notify`` step with no approval to wait for: the failure they report did happen). One a
worker stopped in (``started``) is left to the step runner, which records it
``interrupted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from receiver.model import ApprovalRecord
from receiver.store.approval_ends import RESOLVED_SQL
from receiver.store.audit import append_in_tx
from receiver.store.database import Database
from receiver.store.finish import drew_budget, queue_finish
from receiver.store.step_ends import StepEnd, end_steps
from receiver.store.steps import NOT_RUN

__all__ = ["APPROVED_BY_SQL", "OVERTAKEN_AUDIT", "EscalationEnds", "Overtaken"]

# Who approved the step of the row aliased ``s`` (its latest approval, when that was given;
# approvals are keyed by run and step index, unique across a run's phases), else NULL: the
# column ``approved_by`` (also ``resolved_runs``).
APPROVED_BY_SQL = """(SELECT CASE WHEN a.state = 'approved'
                   THEN coalesce(a.decided_by, 'an approver') END
     FROM approvals a WHERE a.run_id = s.run_id AND a.step_idx = s.idx
     ORDER BY a.requested_at DESC, a.id DESC LIMIT 1) AS approved_by"""

# The audit kind of the run's row that says its escalation ended at the resolution.
OVERTAKEN_AUDIT = "run.escalation_overtaken"

# A step that waited for (or had not yet asked) an approval, and one that needed none.
_UNAPPROVED = "the alert resolved before this escalation step was approved"
_NOT_BEGUN = "not run: the alert resolved before this escalation step began"
# The reason a cancelled approval gives (its notice reads "Approval cancelled, <reason>").
_APPROVAL_REASON = "the alert resolved before the escalation step ran"


@dataclass(frozen=True, slots=True)
class Overtaken:
    """What ending an overtaken escalation did: the indexes of the on_failed steps it ended
    (``not_run`` or ``cancelled``) and the approvals it cancelled, to be announced."""

    steps: list[int]
    approvals: list[ApprovalRecord]


def _ending(row: Any) -> tuple[str, str]:
    """The outcome and message of one open on_failed step that will not run."""
    if row["approved_by"] is not None:
        return NOT_RUN, (
            f"not run: the alert resolved before this escalation step, approved by "
            f"{row['approved_by']}, ran"
        )
    if row["needs_approval"]:
        return "cancelled", _UNAPPROVED
    return NOT_RUN, _NOT_BEGUN


class EscalationEnds(Database):
    """Ending a run's escalation once its alert has resolved (mixin of ``Store``)."""

    async def end_resolved_escalation(
        self, run_id: str, messages: Sequence[str]
    ) -> Overtaken | None:
        """If the alert of ``run_id``'s failed, escalated run has resolved (``RESOLVED_SQL``:
        the run's occurrence closed, or a resolution of the occurrence that escalated stored
        since, not yet taken up), end its on_failed steps still ``pending`` or
        ``awaiting_approval`` that act on a system or need an approval: one whose approval
        was given ``not_run`` (naming who approved it), one still needing it ``cancelled``,
        any other ``not_run``; the approvals of those steps, pending or approved,
        ``cancelled`` (who decided and when kept). Steps whose action is in ``messages`` (the
        actions that only tell people) and need no approval are left to run. Each write
        audited (``step``, ``approval.cancelled``), with one ``run.escalation_overtaken`` row.

        One transaction under the run's row lock (the one the withdrawals and phase stops
        take, so a step is never ended twice). None when the alert has not resolved, the run
        is not an escalated failure, or nothing of the ladder is left to end (a retry writes
        nothing)."""
        async with self._tx() as conn:
            run = await conn.fetchrow(
                f"""SELECT r.fingerprint, {RESOLVED_SQL} AS resolved FROM runs r
                    WHERE r.id = $1::uuid AND r.outcome = 'failed'
                      AND r.escalated_at IS NOT NULL
                    FOR UPDATE OF r""",
                run_id,
            )
            if run is None or not run["resolved"]:
                return None
            # The step's latest approval tells whether it was given (approvals are keyed by
            # run and step index, unique across the run's phases).
            rows = await conn.fetch(
                f"""SELECT s.idx, s.action, s.params::text AS params, s.needs_approval,
                          {APPROVED_BY_SQL}
                   FROM steps s
                   WHERE s.run_id = $1::uuid AND s.phase = 'on_failed'
                     AND s.outcome IN ('pending', 'awaiting_approval')
                     AND (s.needs_approval OR NOT s.action = ANY ($2::text[]))
                   ORDER BY s.idx""",
                run_id,
                list(messages),
            )
            if not rows:
                return None
            ends = [StepEnd(r["idx"], r["action"], r["params"], *_ending(r)) for r in rows]
            ended = [e.idx for e in ends]
            fingerprint = run["fingerprint"]
            cancelled = await end_steps(
                conn,
                run_id,
                fingerprint,
                "on_failed",
                ends,
                approvals_of=ended,
                reason=_APPROVAL_REASON,
                states=["pending", "approved"],
            )
            # The approvers' notices and a slot the escalation drew of its own, given and
            # sent by the pass at once, and by this job when it cannot (finish.py): before,
            # a crash or Redis failing after the commit kept the slot for the window.
            refund = await drew_budget(conn, run_id, "on_failed")
            if cancelled or refund:
                notices = [a.id for a in cancelled]
                await queue_finish(conn, run_id, refund=refund, notices=notices)
            await append_in_tx(
                conn,
                OVERTAKEN_AUDIT,
                run_id,
                fingerprint,
                {"why": "the alert resolved", "ended": ended},
            )
        return Overtaken(ended, cancelled)
