"""A run whose alert resolved before its steps left ran (``ResolvedRuns.end_resolved_run``).

A run is taken up again after it parked: an approval given (its ``resume_run`` job), the target
lock held (``pending``, a job asks again soon), a worker that stopped in it (``running``, its
job claimed again). Once its alert has resolved, none of its steps left acts (nothing acts on
an alert that is over, and the run's on_resolved steps were planned at the resolution from
what had been done by then); the run ends ``cancelled`` instead of staying open for good. The
resolution's own pass ends only what it can see needs nothing more: a pending approval and
the run waiting for it (``Approvals.cancel_approvals``), a run never admitted
(``pipeline.resolve.Close``). An approved step is the job's to end, which looks here when it
takes the run up and, for an approved step, once more after its preview
(``pipeline.overtaken.run_overtaken``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.model import ApprovalRecord, RunOutcome
from receiver.store.approval_ends import RESOLVED_SQL
from receiver.store.audit import append_in_tx
from receiver.store.database import Database
from receiver.store.escalation_ends import APPROVED_BY_SQL
from receiver.store.fence import LeaseFence, check_held, fence_args, held_sql
from receiver.store.finish import admitted_release, queue_finish
from receiver.store.step_ends import StepEnd, end_steps
from receiver.store.steps import NOT_RUN, mark_not_run

__all__ = ["ResolvedEnd", "ResolvedRuns"]

# Why the run's steps left did not run when none of them waited for an approval.
_NOT_RUN = "not run: the alert resolved before the run's steps left ran"
# The reason a cancelled approval gives (its notice reads "Approval cancelled, <reason>").
_APPROVAL_REASON = "the alert resolved before the step ran"


@dataclass(frozen=True, slots=True)
class ResolvedEnd:
    """What ending a run overtaken by its alert's resolution did: the run's ``error`` (why it
    ended) and the approvals it cancelled, to be announced."""

    error: str
    approvals: list[ApprovalRecord]


def _ending(row: Any) -> tuple[str, str]:
    """The outcome and message of one step of the run held for its approval."""
    if row["approved_by"] is not None:
        return NOT_RUN, (
            f"not run: the alert resolved before step {row['idx']}, approved by "
            f"{row['approved_by']}, ran"
        )
    return "cancelled", f"the alert resolved before step {row['idx']} was approved"


class ResolvedRuns(Database):
    """Ending a run its alert's resolution overtook (mixin of ``Store``)."""

    async def end_resolved_run(
        self, run_id: str, lease: LeaseFence | None = None
    ) -> ResolvedEnd | None:
        """If ``run_id`` is still open (``pending``, ``running`` or ``awaiting_approval``) and
        its alert has resolved (``RESOLVED_SQL``: the run closed, or a resolution of its
        occurrence stored since it began, not yet taken up), end it ``cancelled``: a step of
        its own held for an approval becomes ``not_run`` when the approval was given ("not
        run: the alert resolved before step 0, approved by alice, ran"), ``cancelled`` when it
        was not ("the alert resolved before step 0 was approved"); their approvals, pending or
        approved, ``cancelled`` (who decided and when kept); its other steps still to run
        ``not_run`` (one a worker stopped in ``interrupted``: it may have acted). The run's
        error is the first held step's message, else ``_NOT_RUN``. Each write audited
        (``step``, ``approval.cancelled``, ``run.outcome``). Its on_resolved steps are left
        alone: the resolution is their occasion. Queues the ``finish_end`` job of the end
        (finish.py): the unused slot, the approvers' notices, the last admission's lock.

        One transaction under the run's row lock. None when the run is not open or its alert
        has not resolved (nothing is written). ``lease``: the claim it is made under; LeaseLost,
        nothing written, once its owner lost it (fence.py): a late copy would end a run its
        new owner took up while the alert fired, and acts on."""
        async with self._tx() as conn:
            held = await conn.fetchval(
                f"WITH held AS ({held_sql('$1', '$2', '$3', '$4')}) SELECT ok FROM held",
                *fence_args(lease),
            )
            check_held(held, lease, f"the end of run {run_id}, its alert resolved")
            run = await conn.fetchrow(
                f"""SELECT r.fingerprint, {RESOLVED_SQL} AS resolved FROM runs r
                    WHERE r.id = $1::uuid
                      AND r.outcome IN ('pending', 'running', 'awaiting_approval')
                    FOR UPDATE OF r""",
                run_id,
            )
            if run is None or not run["resolved"]:
                return None
            fingerprint = run["fingerprint"]
            # The step's latest approval tells whether it was given (approvals are keyed by
            # run and step index, unique across the run's phases).
            waiting = await conn.fetch(
                f"""SELECT s.idx, s.action, s.params::text AS params,
                          {APPROVED_BY_SQL}
                   FROM steps s
                   WHERE s.run_id = $1::uuid AND s.phase = 'run'
                     AND s.outcome = 'awaiting_approval'
                   ORDER BY s.idx""",
                run_id,
            )
            ends = [StepEnd(r["idx"], r["action"], r["params"], *_ending(r)) for r in waiting]
            cancelled = await end_steps(
                conn,
                run_id,
                fingerprint,
                "run",
                ends,
                approvals_of=[e.idx for e in ends],
                reason=_APPROVAL_REASON,
                states=["pending", "approved"],
            )
            # After the held steps ended: the others still to run are the ones left open.
            why = ends[0].message if ends else _NOT_RUN
            await mark_not_run(conn, run_id, why)
            await conn.execute(
                """UPDATE runs SET outcome = $2, error = $3,
                                   finished_at = coalesce(finished_at, remediator_now())
                   WHERE id = $1::uuid""",
                run_id,
                RunOutcome.CANCELLED.value,
                why,
            )
            outcome_data = {"outcome": RunOutcome.CANCELLED.value, "error": why}
            await append_in_tx(conn, "run.outcome", run_id, fingerprint, outcome_data)
            # What follows beyond the store, queued with the end (finish.py): the slot, the
            # approvers' notices, the lock the run's last admission took (a worker that died
            # mid-step holds it). ``run_overtaken`` does them at once too; the job finds them done.
            release = await admitted_release(conn, run_id)
            await queue_finish(conn, run_id, notices=[a.id for a in cancelled], release=release)
        return ResolvedEnd(why, cancelled)
