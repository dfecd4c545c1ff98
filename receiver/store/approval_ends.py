"""What an approval that ends without running its step ends with it (rejected, expired,
cancelled): the held step, the steps after it that will not run, the run waiting for it and
its pending ``resume_run`` job, which has nothing left to do, and the ``finish_end`` job
that gives the run's unused budget slot back and tells the approvers once the end committed
(finish.py). Each in the caller's transaction (``Approvals``), audited there. An approved
step taken up after its alert resolved is ``ResolvedRuns.end_resolved_run``'s
(resolved_runs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from receiver.model import ApprovalRecord, RunOutcome
from receiver.store.audit import append_in_tx
from receiver.store.finish import queue_finish
from receiver.store.records import JobKind
from receiver.store.steps import stored_step_audit

__all__ = ["RESOLVED_SQL", "UNDO_SQL", "end_run"]

# The run's alert has resolved: closed by the worker, or a resolved event of its episode stored
# since the run began (the worker may not have taken it up yet; one stored before belongs to an
# earlier occurrence of a re-fired episode). ``r`` is the approval's run. For a step of its
# escalation (``on_failed``, recorded at ``escalated_at``) the alert that matters is the one
# still firing then: the run's own when it did not resolve in time, the re-fired occurrence
# when it recurred; so only a resolution since the escalation counts.
RESOLVED_SQL = """(CASE WHEN r.escalated_at IS NULL THEN (r.resolved_at IS NOT NULL OR EXISTS (
        SELECT 1 FROM alert_events e
        WHERE e.fingerprint = r.fingerprint AND e.starts_at = r.starts_at
          AND e.status = 'resolved' AND e.received_at >= r.created_at))
    ELSE ((r.verify_result = 'not_resolved' AND r.resolved_at IS NOT NULL) OR EXISTS (
        SELECT 1 FROM alert_events e
        WHERE e.fingerprint = r.fingerprint AND e.starts_at = r.starts_at
          AND e.status = 'resolved' AND e.received_at >= r.escalated_at)) END)"""

# The approval ``a`` is of an on_resolved step (phase ``resolve``; step indices are unique
# across a run's phases, ``Verification.record_undo``). Such a step is asked for because the
# alert resolved: its resolution is its occasion, never a reason to cancel it or to refuse its
# decision. It waits for its decision or its expiry.
UNDO_SQL = """EXISTS (SELECT 1 FROM steps s
    WHERE s.run_id = a.run_id AND s.idx = a.step_idx AND s.phase = 'resolve')"""


def _idx(row: Mapping[str, Any]) -> int:
    idx: int = row["idx"]
    return idx


async def end_run(
    conn: Any,
    approval: ApprovalRecord,
    outcome: RunOutcome,
    step_outcome: str,
    why: str,
) -> str | None:
    """End the run that waits for ``approval``, and its held step, saying ``why``; both
    audited (``step``, ``run.outcome``). Returns the held step's phase ('run', 'resolve',
    'on_failed'); None when it was not waiting anymore. A held step of the run's escalation
    (``on_failed``; step indices are unique across a run's phases) or of its on_resolved
    steps (``resolve``) ends the same way, and the run keeps its outcome (failed; verified
    or succeeded): the undo that was not approved is not done, nor are the on_resolved
    steps after it (``not_run``), as a run's steps after a rejected one never run; nor the
    escalation's steps after one rejected or expired. A run ended here, or a ladder ended at
    a rejected or expired step, has its pending ``resume_run`` job (queued for the
    approval's expiry) marked done with it, unless another step of the run still waits for
    its approval. Queues the ``finish_end`` job of the approval's end (``queue_finish``)."""
    step = await conn.fetchrow(
        """UPDATE steps SET outcome = $3, message = $4, finished_at = remediator_now()
           WHERE run_id = $1::uuid AND idx = $2 AND outcome = 'awaiting_approval'
           RETURNING phase, action, params::text AS params""",
        approval.run_id,
        approval.step_idx,
        step_outcome,
        why,
    )
    fingerprint = await conn.fetchval(
        """UPDATE runs SET outcome = $2, error = $3,
                            finished_at = coalesce(finished_at, remediator_now())
           WHERE id = $1::uuid AND outcome = 'awaiting_approval' RETURNING fingerprint""",
        approval.run_id,
        outcome.value,
        why,
    )
    ended = [] if step is None else [(approval.step_idx, step, step_outcome, why)]
    # The steps after a held one that was not approved end with it: an undo's (the undo that
    # was not approved is not done), and an escalation's when the step was rejected or expired
    # (nobody said yes to the ladder's next step: it stops there; they stayed pending for good,
    # no job to take them up). A cancelled escalation step's ladder goes on (its caller queues
    # the job: a resolution ends what acts and sends the messages).
    ends_later = step is not None and (
        step["phase"] == "resolve"
        or (step["phase"] == "on_failed" and step_outcome in ("rejected", "expired"))
    )
    if step is not None and ends_later:
        what = "on_resolved" if step["phase"] == "resolve" else "escalation"
        not_run = f"not run: the {what} step before it was not approved ({why})"
        later = await conn.fetch(
            """UPDATE steps SET outcome = 'not_run', message = $3,
                                finished_at = remediator_now()
               WHERE run_id = $1::uuid AND phase = $4 AND idx > $2
                 AND outcome = 'pending'
               RETURNING idx, phase, action, params::text AS params""",
            approval.run_id,
            approval.step_idx,
            not_run,
            step["phase"],
        )
        ended += [(r["idx"], r, "not_run", not_run) for r in sorted(later, key=_idx)]
    for idx, row, ended_as, message in ended:
        await append_in_tx(
            conn,
            "step",
            approval.run_id,
            fingerprint,
            # Params edited to be unreadable end the step all the same (params_unreadable).
            stored_step_audit(row["phase"], idx, row["action"], ended_as, message, row["params"]),
        )
    if fingerprint is not None:
        await append_in_tx(
            conn,
            "run.outcome",
            approval.run_id,
            fingerprint,
            {"outcome": outcome.value, "error": why},
        )
    if fingerprint is not None or (
        ends_later and step is not None and step["phase"] == "on_failed"
    ):
        # The job the approval queued for its expiry has nothing left to take up: an ended
        # run is not resumed (``pipeline.jobs``), nor is a ladder that stopped at this step
        # (it took its later steps with it, and the pass that parked it gave its target lock
        # back). Ended here rather than left pending until that due time, counted as
        # unfinished work in the queue's gauges and listings, then taking up a ladder with no
        # step left. One claimed right now completes by itself. Not while another step of
        # the run waits for its approval (a held undo): its decision wakes the same job.
        await conn.execute(
            """UPDATE jobs SET state = 'done', done_at = remediator_now()
               WHERE run_id = $1::uuid AND kind = $2 AND state = 'pending'
                 AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = $1::uuid
                                   AND s.outcome = 'awaiting_approval')""",
            approval.run_id,
            str(JobKind.RESUME_RUN),
        )
    # What follows beyond the store, queued with the end: the slot the run never used, the
    # approvers' notice (finish.py). The desk does both at once too; the job finds them done.
    await queue_finish(conn, approval.run_id, notices=[approval.id])
    return None if step is None else str(step["phase"])
