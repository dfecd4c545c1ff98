"""What an operator's drop of a job ends with it: the run that only that job would have moved.

A ``verify_deadline`` job is the one thing that ends a run's verification once its deadline
(or its settle period) has passed: a resolution closes a run in time by itself, but a late one,
a run still settling and a run whose alert never resolves all wait for the job. Dropped
(``Queues.drop_item``: pending, or dead after its attempts ran out), nothing is left to end the
run, which would then read ``verifying`` for good in the review. So the drop ends it in the same
transaction: ``cancelled``, without a verdict (``verify_result`` stays empty), its error saying
which job was dropped, by whom and why, audited as ``run.outcome``. It fails closed: no
escalation is recorded or run (the run's on_failed steps act on a failure that was never
established), the circuit breaker is not fed, and the run held no target lock (a run gives its
lock back before it goes to ``verifying``: pipeline.record). A run with another open
``verify_deadline`` job (asked for again after this one died) is left to that job.

A dead job that is not dropped keeps its run waiting: retried, it takes the run up where it
stopped (failures.py, queues.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from receiver.model import RunOutcome
from receiver.store.audit import append_in_tx
from receiver.store.records import JobKind

__all__ = ["end_dropped_job_run"]


async def end_dropped_job_run(
    conn: Any, job: Mapping[str, Any], actor: str, reason: str
) -> str | None:
    """In the drop's transaction on ``conn``: end the run that the dropped ``job`` (its row:
    ``id``, ``kind``, ``run_id``) left with nothing to move it, as the module says. Returns the
    outcome the run ended with, None when it was left as it was (another kind of job, a run
    no longer verifying, another open job of the kind)."""
    if job["kind"] != JobKind.VERIFY_DEADLINE:
        return None
    why = (
        f"verification not done: its deadline job {job['id']} was dropped by {actor} "
        f"({reason}); no verdict, no escalation"
    )
    fingerprint = await conn.fetchval(
        """UPDATE runs SET outcome = $2, error = $3,
                          finished_at = coalesce(finished_at, remediator_now())
           WHERE id = $1::uuid AND outcome = 'verifying'
             AND NOT EXISTS (SELECT 1 FROM jobs o
                             WHERE o.run_id = runs.id AND o.kind = $4 AND o.id <> $5
                               AND o.state IN ('pending', 'claimed'))
           RETURNING fingerprint""",
        job["run_id"],
        RunOutcome.CANCELLED.value,
        why,
        JobKind.VERIFY_DEADLINE.value,
        job["id"],
    )
    if fingerprint is None:
        return None
    await append_in_tx(
        conn,
        "run.outcome",
        job["run_id"],
        fingerprint,
        {"outcome": RunOutcome.CANCELLED.value, "error": why, "job_id": job["id"], "by": actor},
    )
    return RunOutcome.CANCELLED.value
