"""A step left pending because its system could not be reached (receiver.pipeline.unreachable).

``StepDeferrals.defer_step`` writes on the step's row what its waiting says (its message, how
many tries, when the first failed: ``started_at``) and leaves its outcome as it was (``pending``,
or ``awaiting_approval`` for an approved step): it is still to run. The tries and the first
try are the current wait's, as the pipeline counts them from the row while its message says
it waits: a guard that held the step in between (a pause, another run's target lock) rewrote
that message, and the next outage is a new wait, bounded from its own first try. Before, the
row kept the first wait's ``started_at`` and count, and a step held for longer than its bound
between two outages failed at its second try of the second. Only the first deferral of
a step is audited (a ``step.deferred`` row); the later ones update the row alone. An outage of
minutes retries every step it meets a dozen times, and a storm's thousand runs would write
that many audit rows a minute for nothing the review does not read from the step itself: the
first row says the waiting began, and the step's end (ran, or ``failed`` past the bound) is
audited as any step's.
"""

from __future__ import annotations

from datetime import datetime

from receiver.store.audit import append_in_tx
from receiver.store.database import Database
from receiver.store.fence import LeaseFence, check_held, fence_args, held_sql
from receiver.store.steps import STARTED

__all__ = ["DEFERRED_AUDIT", "StepDeferrals"]

# The audit kind of a step's first deferral.
DEFERRED_AUDIT = "step.deferred"

# What a deferred step may be: still to run (planned, or held for an approval and approved).
_WAITING = ("pending", "awaiting_approval")


class StepDeferrals(Database):
    """Deferred steps (mixin of ``Store``)."""

    async def defer_step(
        self,
        run_id: str,
        *,
        phase: str,
        idx: int,
        action: str,
        message: str,
        tries: int,
        first_at: datetime,
        audit: bool,
        lease: LeaseFence | None = None,
        mark: str | None = None,
        back_to: str = "pending",
    ) -> bool:
        """Say on step ``idx`` of ``phase`` that it waits for its system: ``message``,
        ``tries`` (its attempts so far in this wait) and ``first_at`` (when this wait's first
        try failed), written as its ``attempts`` and ``started_at``; its outcome stays.
        ``audit``: also append a ``step.deferred`` row (``{"phase", "idx", "action",
        "message", "tries"}``), in the same transaction: the step's first deferral. True when
        the step was still waiting to run and is updated; False when it is not (ended,
        started) and nothing was written.
        ``lease``: LeaseLost, nothing written, when its claim is no longer held (fence.py).
        ``mark``: the message of this try's start mark (``Store.start_step``), for a step
        whose action is marked ``started`` before it acts: a step ``started`` with exactly that
        message is waiting too, and gets ``back_to`` (``pending``, or ``awaiting_approval`` for
        an approved step) as its outcome again and ``first_at`` as its ``started_at``, the mark
        cleared in the same transaction as the deferral is written and audited (always, then:
        the mark's own row says the step started, this one that it did not act). A mark of
        another attempt (or none left) is not touched: False, nothing written.
        Raises StoreUnavailable."""
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""
                WITH held AS ({held_sql("$8", "$9", "$10", "$11")}),
                up AS (
                    -- The wait's own tries and first try, as the caller counted them: a
                    -- step whose message no longer says it waits (a guard held it since)
                    -- begins a new wait, which must not be bounded from an older one's.
                    UPDATE steps SET message = $4, attempts = $5, started_at = $6,
                                     outcome = CASE WHEN steps.outcome = '{STARTED}' THEN $13
                                               ELSE steps.outcome END
                    WHERE run_id = $1::uuid AND phase = $2 AND idx = $3
                      AND (outcome = ANY ($7::text[])
                           OR (outcome = '{STARTED}' AND message = $12::text))
                      AND (SELECT ok FROM held)
                    RETURNING run_id
                )
                SELECT held.ok,
                       (SELECT runs.fingerprint FROM up JOIN runs ON runs.id = up.run_id),
                       (SELECT count(*) FROM up) AS updated
                FROM held
                """,
                run_id,
                phase,
                idx,
                message,
                tries,
                first_at,
                list(_WAITING),
                *fence_args(lease),
                mark,
                back_to,
            )
            assert row is not None  # held is one row
            check_held(row["ok"], lease, f"the deferral of step {idx} of {phase} of run {run_id}")
            if not row["updated"]:
                return False
            if audit or mark is not None:
                data = {
                    "phase": phase,
                    "idx": idx,
                    "action": action,
                    "message": message,
                    "tries": tries,
                }
                await append_in_tx(conn, DEFERRED_AUDIT, run_id, row["fingerprint"], data)
            return True
