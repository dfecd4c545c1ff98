"""What an operator's drop of a job ends with it: what only that job would have moved.

A dropped job (``Queues.drop_item``: pending, or dead after its attempts ran out) is never
processed. What it alone would have moved would then wait for good: a run non-final in the
review, steps ``pending`` or waiting for an approval nobody can give any more. So the drop
ends it in the same transaction, each ending saying which job was dropped, by whom and why,
and audited (``run.outcome``, ``step``, ``approval.cancelled``), as the review shows them:

- ``verify_deadline``, of a run still ``verifying``: it is the one thing that ends a
  verification past its deadline (or its settle period). The run ends ``cancelled``, without a
  verdict (``verify_result`` stays empty). It fails closed: no escalation is recorded or run
  (its on_failed steps would act on a failure never established), the breaker is not fed,
  and the run holds no target lock (given back before ``verifying``: pipeline.record).
- ``resume_run`` of a run ``awaiting_approval``: the job both takes the run up once approved
  and expires the approval. The run ends ``cancelled``, its held step ``cancelled``, its
  approvals pending or approved ``cancelled`` (their links answer that they are no longer
  open). The run may still hold its target lock (a parked run whose worker died before giving
  it back): the answer names it (``JobEnd.lock``) for the HTTP drop to release after this
  transaction commits, by the exact token of the run's last admission (``Guards.release``).
- ``resume_run`` of a ``pending`` run that waited for its target lock: ``cancelled``.
- ``resume_run`` of a ``running`` run: the job its alert's resolution queues (``close_run``)
  so that a run whose worker stopped in it ends ``cancelled`` rather than stay open, or the
  one that took it up and died. The run ends ``cancelled``, its own steps not begun
  ``not_run``, one a worker stopped in ``interrupted`` (it may have acted), their approvals
  ``cancelled``. It may hold its target lock, named for the HTTP drop as above.
- ``resume_run`` of a ``failed`` run whose escalation (``on_failed`` steps) is still ahead, and
  ``resume_run`` or ``resume_resolve`` of a closed run whose on_resolved steps are held (an
  approval, a pause, the lock, a carried undo's safety net): those steps not begun
  (``pending``, ``awaiting_approval``) end ``not_run``, their approvals ``cancelled``; the run
  keeps its outcome. A step a worker stopped in (``started``) is left to the step runner.
  The escalation's job also feeds the rule's circuit breaker and announces the failed
  verification (pipeline/escalate.py): when that announcement was not made, the drop does
  neither (the breaker is Redis's, the announcement the rule's channels': this transaction
  reaches neither), and says so (``JobEnd.not_done``, a ``run.escalation_dropped`` row), steps
  ended or none.

Left as it is, because something else will move it: a run another open job of a resume kind
(or, for a verification, another deadline job) holds; a run whose firing event, or a resolved
event of its episode, is pending or claimed (that event's own pass may be working on it);
an approval another transaction is closing right now (its expiry, a decision, a resolution:
that one ends the run). A dead job that is not dropped keeps its run waiting: retried, it
takes the run up where it stopped (failures.py, queues.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from receiver.model import Announcement, ApprovalRecord, RunOutcome, Target
from receiver.store.announcements import ANNOUNCED
from receiver.store.audit import append_in_tx
from receiver.store.records import JobKind
from receiver.store.step_ends import StepEnd, end_steps
from receiver.store.steps import ENDED_WHILE_STARTED, INTERRUPTED, NOT_RUN, STARTED

__all__ = ["ESCALATION_NOT_DONE", "JobEnd", "end_dropped_job_run"]

# The kinds of job that take a parked run or its follow-up up again: while one of them is open
# beside the dropped one, that one moves the run.
_RESUMES = [JobKind.RESUME_RUN.value, JobKind.RESUME_RESOLVE.value]

# An event whose own pass may be working on the run ``r`` (or will): its firing event, or a
# resolution of its episode, still pending or claimed. A dead one waits for an operator.
_BUSY_SQL = """EXISTS (SELECT 1 FROM alert_events e
    WHERE e.state IN ('pending', 'claimed')
      AND (e.id = r.event_id
           OR (e.fingerprint = r.fingerprint AND e.starts_at = r.starts_at
               AND e.status = 'resolved')))"""

# What a dropped escalation job of a run whose failure was never announced leaves undone.
ESCALATION_NOT_DONE = (
    "the failed verification was not announced, and may not have been counted by the rule's "
    "circuit breaker: the escalation's resume_run job, which does both, was dropped"
)


@dataclass(frozen=True, slots=True)
class JobEnd:
    """What a drop ended: ``rule``, the run's rule (to count its end by); ``outcome``, the
    run's new outcome (None: it kept its own); ``steps``, the indexes of the steps it ended,
    ``interrupted`` those of them a worker had stopped in (they may have acted); ``approvals``,
    those it cancelled (to be counted and announced once the drop committed);
    ``lock``, the rule and target whose lock the ended run may still hold (to be released,
    once the drop committed, by the token of the run's last admission), None when it holds
    none; ``lock_token``, that token as the drop's transaction read it (``admitted_token``:
    None never admitted, "" none taken), read once for both the drop's ``finish_end`` job
    and the caller's release; ``not_done``, what the dropped job would have done that nothing
    does now (``ESCALATION_NOT_DONE``), or None."""

    rule: str
    outcome: str | None = None
    steps: list[int] = field(default_factory=list)
    interrupted: list[int] = field(default_factory=list)
    approvals: list[ApprovalRecord] = field(default_factory=list)
    lock: tuple[str, Target] | None = None
    lock_token: str | None = ""
    not_done: str | None = None


async def end_dropped_job_run(
    conn: Any, job: Mapping[str, Any], actor: str, reason: str
) -> JobEnd | None:
    """In the drop's transaction on ``conn``, the run's row already locked by the caller (the
    order every writer of a run's ends takes: the run, then its jobs and approvals): end what
    the dropped ``job`` (its row: ``id``, ``kind``, ``run_id``) left with nothing to move
    it, as the module says. None when nothing was ended (another kind of job, a run that
    something else moves, nothing left open)."""
    if job["run_id"] is None:
        return None
    if job["kind"] == JobKind.VERIFY_DEADLINE:
        return await _end_verification(conn, job, actor, reason)
    if job["kind"] not in _RESUMES:
        return None
    run = await conn.fetchrow(
        f"""SELECT r.fingerprint, r.outcome, r.rule, r.target_kind, r.target_namespace,
                   r.target_name, r.resolved_at IS NOT NULL AS closed, {_BUSY_SQL} AS busy,
                   EXISTS (SELECT 1 FROM jobs o
                           WHERE o.run_id = r.id AND o.kind = ANY ($2::text[]) AND o.id <> $3
                             AND o.state IN ('pending', 'claimed')) AS held,
                   r.escalated_at IS NOT NULL
                     AND r.verify_result IN ('not_resolved', 'recurred')
                     AND NOT EXISTS (SELECT 1 FROM audit_log a
                                     WHERE a.run_id = r.id AND a.kind = $4
                                       AND a.data->>'event' = $5) AS unannounced
            FROM runs r WHERE r.id = $1::uuid""",
        job["run_id"],
        _RESUMES,
        job["id"],
        ANNOUNCED,
        Announcement.VERIFICATION_FAILED.value,
    )
    if run is None or run["busy"] or run["held"]:
        return None
    why = f"its {job['kind']} job {job['id']} was dropped by {actor} ({reason})"
    run_id = str(job["run_id"])
    if job["kind"] == JobKind.RESUME_RUN and run["outcome"] == RunOutcome.AWAITING_APPROVAL:
        return await _end_parked(conn, run_id, run, why, job, actor)
    if job["kind"] == JobKind.RESUME_RUN and run["outcome"] == RunOutcome.PENDING:
        error = f"cancelled while waiting for the target lock: {why}"
        await _set_cancelled(conn, run_id, run["fingerprint"], "pending", error, job, actor)
        return JobEnd(str(run["rule"]), outcome=RunOutcome.CANCELLED.value)
    ended = JobEnd(str(run["rule"]))
    if job["kind"] == JobKind.RESUME_RUN and run["outcome"] == RunOutcome.RUNNING:
        ended = await _end_running(conn, run_id, run, why, job, actor)
    phases = []
    if job["kind"] == JobKind.RESUME_RUN and run["outcome"] == RunOutcome.FAILED:
        phases.append(("on_failed", f"not run: the escalation was not taken up, {why}"))
        if run["unannounced"]:
            ended = replace(ended, not_done=ESCALATION_NOT_DONE)
    if run["closed"]:
        phases.append(("resolve", f"not run: the on_resolved steps were not taken up, {why}"))
    for phase, message in phases:
        steps, approvals = await _end_open_steps(
            conn, run_id, run["fingerprint"], phase, message, why
        )
        ended.steps.extend(steps)
        ended.approvals.extend(approvals)
    if ended.not_done is not None:
        # After the steps' rows, as a run's end follows them: what the drop left undone.
        data = {"not_done": ended.not_done, "why": why, "job_id": job["id"], "by": actor}
        await append_in_tx(conn, "run.escalation_dropped", run_id, run["fingerprint"], data)
    return ended if ended.steps or ended.outcome or ended.not_done else None


async def _end_verification(
    conn: Any, job: Mapping[str, Any], actor: str, reason: str
) -> JobEnd | None:
    """A verifying run that only this ``verify_deadline`` job would have ended."""
    why = (
        f"verification not done: its deadline job {job['id']} was dropped by {actor} "
        f"({reason}); no verdict, no escalation"
    )
    ended = await conn.fetchrow(
        """UPDATE runs SET outcome = $2, error = $3,
                          finished_at = coalesce(finished_at, remediator_now())
           WHERE id = $1::uuid AND outcome = 'verifying'
             AND NOT EXISTS (SELECT 1 FROM jobs o
                             WHERE o.run_id = runs.id AND o.kind = $4 AND o.id <> $5
                               AND o.state IN ('pending', 'claimed'))
           RETURNING fingerprint, rule""",
        job["run_id"],
        RunOutcome.CANCELLED.value,
        why,
        JobKind.VERIFY_DEADLINE.value,
        job["id"],
    )
    if ended is None:
        return None
    data = {"outcome": RunOutcome.CANCELLED.value, "error": why, "job_id": job["id"], "by": actor}
    await append_in_tx(conn, "run.outcome", job["run_id"], ended["fingerprint"], data)
    return JobEnd(str(ended["rule"]), outcome=RunOutcome.CANCELLED.value)


async def _end_parked(
    conn: Any, run_id: str, run: Mapping[str, Any], why: str, job: Mapping[str, Any], actor: str
) -> JobEnd | None:
    """A run ``awaiting_approval`` whose ``resume_run`` job (its approval's expiry, or its
    taking-up once approved) was dropped: cancelled with its held steps and approvals."""
    # SKIP LOCKED: an approval another transaction is closing (expiry, decision, resolution)
    # holds its row and waits for the run's, which the drop holds; waiting for it here would
    # deadlock. That one ends the run: left to it.
    locked = await conn.fetch(
        """SELECT step_idx FROM approvals
           WHERE run_id = $1::uuid AND state IN ('pending', 'approved')
           FOR UPDATE SKIP LOCKED""",
        run_id,
    )
    open_count = await conn.fetchval(
        """SELECT count(*) FROM approvals
           WHERE run_id = $1::uuid AND state IN ('pending', 'approved')""",
        run_id,
    )
    if len(locked) != open_count:
        return None
    error = f"cancelled while waiting for an approval: {why}"
    held = await conn.fetch(
        """SELECT idx, phase, action, params::text AS params FROM steps
           WHERE run_id = $1::uuid AND outcome = 'awaiting_approval' ORDER BY idx""",
        run_id,
    )
    fingerprint = run["fingerprint"]
    ended = JobEnd(str(run["rule"]), outcome=RunOutcome.CANCELLED.value, lock=_lock_of(run))
    for phase in sorted({r["phase"] for r in held}):
        ends = [
            StepEnd(r["idx"], r["action"], r["params"], "cancelled", error)
            for r in held
            if r["phase"] == phase
        ]
        ended.steps.extend(e.idx for e in ends)
        ended.approvals.extend(
            await end_steps(
                conn, run_id, fingerprint, phase, ends, approvals_of=[], reason=why, states=[]
            )
        )
    # Every open approval of the run, held step or not (one approved whose taking-up was the
    # dropped job has a step still waiting too): none can be acted on any more.
    ended.approvals.extend(
        await end_steps(
            conn,
            run_id,
            fingerprint,
            "run",
            [],
            approvals_of=[r["step_idx"] for r in locked],
            reason=why,
            states=["pending", "approved"],
        )
    )
    await _set_cancelled(conn, run_id, fingerprint, "awaiting_approval", error, job, actor)
    return ended


async def _end_running(
    conn: Any, run_id: str, run: Mapping[str, Any], why: str, job: Mapping[str, Any], actor: str
) -> JobEnd:
    """A ``running`` run whose ``resume_run`` job was dropped: ``cancelled``, its own steps
    not begun ``not_run``, one started ``interrupted`` (``mark_not_run``'s endings, each with
    its ``step`` row), their approvals, pending or approved, ``cancelled``."""
    error = f"cancelled while running: {why}"
    rows = await conn.fetch(
        """SELECT idx, action, params::text AS params, outcome, message FROM steps
           WHERE run_id = $1::uuid AND phase = 'run'
             AND outcome IN ('pending', 'awaiting_approval', 'started')
           ORDER BY idx""",
        run_id,
    )
    ends = [
        StepEnd(
            r["idx"],
            r["action"],
            r["params"],
            *(
                (INTERRUPTED, f"{ENDED_WHILE_STARTED}{r['message']}; {error}")
                if r["outcome"] == STARTED
                else (NOT_RUN, f"not run: {error}")
            ),
        )
        for r in rows
    ]
    approvals = await end_steps(
        conn,
        run_id,
        run["fingerprint"],
        "run",
        ends,
        approvals_of=[e.idx for e in ends],
        reason=why,
        states=["pending", "approved"],
    )
    await _set_cancelled(conn, run_id, run["fingerprint"], "running", error, job, actor)
    return JobEnd(
        str(run["rule"]),
        outcome=RunOutcome.CANCELLED.value,
        steps=[e.idx for e in ends],
        interrupted=[e.idx for e in ends if e.outcome == INTERRUPTED],
        approvals=approvals,
        lock=_lock_of(run),
    )


def _lock_of(run: Mapping[str, Any]) -> tuple[str, Target]:
    """The rule and target whose lock an ended ``run`` (its row) may still hold."""
    target = Target(run["target_kind"], run["target_namespace"], run["target_name"])
    return str(run["rule"]), target


async def _set_cancelled(
    conn: Any,
    run_id: str,
    fingerprint: str,
    was: str,
    error: str,
    job: Mapping[str, Any],
    actor: str,
) -> None:
    """End the run, still ``was`` (its row locked by the drop), ``cancelled`` with ``error``;
    audited ``run.outcome`` naming the dropped job and who dropped it."""
    await conn.execute(
        """UPDATE runs SET outcome = $2, error = $3,
                          finished_at = coalesce(finished_at, remediator_now())
           WHERE id = $1::uuid AND outcome = $4""",
        run_id,
        RunOutcome.CANCELLED.value,
        error,
        was,
    )
    data = {"outcome": RunOutcome.CANCELLED.value, "error": error}
    await append_in_tx(
        conn, "run.outcome", run_id, fingerprint, {**data, "job_id": job["id"], "by": actor}
    )


async def _end_open_steps(
    conn: Any, run_id: str, fingerprint: str, phase: str, message: str, why: str
) -> tuple[list[int], list[ApprovalRecord]]:
    """The run's ``phase`` steps not begun (``pending``, ``awaiting_approval``) end
    ``not_run`` with ``message``; their approvals, pending or approved, ``cancelled``.
    Returns the indexes of the steps ended and the approvals cancelled."""
    rows = await conn.fetch(
        """SELECT idx, action, params::text AS params FROM steps
           WHERE run_id = $1::uuid AND phase = $2
             AND outcome IN ('pending', 'awaiting_approval')
           ORDER BY idx""",
        run_id,
        phase,
    )
    ends = [StepEnd(r["idx"], r["action"], r["params"], NOT_RUN, message) for r in rows]
    ended = [e.idx for e in ends]
    cancelled = await end_steps(
        conn,
        run_id,
        fingerprint,
        phase,
        ends,
        approvals_of=ended,
        reason=why,
        states=["pending", "approved"],
    )
    return ended, cancelled
