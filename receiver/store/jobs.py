"""The job queue: work that takes up an existing run again, leased like alert events.

Alert events start runs; a job resumes one after it parked (``JobKind``): an approval was
decided or a guard's ``retry_at`` came (``resume_run``), or a VERIFYING run's deadline came
(``verify_deadline``). Jobs live in one table with a ``kind`` column, so the worker has one claim
loop, one lease discipline and one LISTEN for both queues:

- At most one open job per (kind, run). Enqueueing again is idempotent: a pending job keeps the
  earlier of the two due times; a claimed job is marked to run once more when its claim
  completes (``rerun_at``), so a request made while the job was running is not lost.
- Claims are leases taken with SKIP LOCKED, as for events; a lease that runs out (its worker
  died) makes the job claimable again, at-least-once.
- A run's jobs are taken one at a time, oldest due first, so two kinds of work never act on one
  run at once.
- A job that is due when it is enqueued (or becomes due by completing with a rerun) sends NOTIFY
  on ``WORK_CHANNEL`` in the same transaction; later jobs are found by the worker's poll.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from receiver.store.canonical import canonical_json
from receiver.store.database import WORK_CHANNEL
from receiver.store.errors import translate
from receiver.store.leases import JOBS, Leases, claim_assignments, due_sql, held_where
from receiver.store.records import ClaimedJob, JobKind, job_from_row
from receiver.store.stored_json import stored_data

__all__ = ["JobQueue", "enqueue"]

# Claim candidates walked per call, beyond the ones asked for (room for rows that other workers
# are locking at the same moment).
_CLAIM_WINDOW = 32

# First key of the per-run advisory lock a claim holds while it picks a run's job ("JOBS").
_RUN_LOCK_CLASS = 0x4A4F4253

_JOB_COLUMNS = """
    j.id, j.kind, j.run_id::text AS run_id, j.payload::text AS payload, j.attempts,
    j.lease_until, j.last_error, j.failures
"""


async def enqueue(
    conn: Any,
    kind: str,
    run_id: str,
    *,
    delay_s: float = 0.0,
    payload: Mapping[str, Any] | None = None,
) -> int | None:
    """Enqueue on ``conn`` (inside the caller's transaction, if it has one); see enqueue_job."""
    job_kind = JobKind(kind)
    row = await conn.fetchrow(
        """
        WITH up AS (
            -- From runs, so a run that does not exist inserts nothing instead of failing.
            INSERT INTO jobs (kind, run_id, payload, not_before)
            SELECT $1, runs.id, $3::jsonb, remediator_now() + make_interval(secs => $4)
            FROM runs WHERE runs.id = $2::uuid
            -- A dead job is out of its slot (jobs_open_once): asking again queues a new one.
            ON CONFLICT (kind, run_id) WHERE state IN ('pending', 'claimed') DO UPDATE SET
                not_before = CASE WHEN jobs.state = 'pending'
                                  THEN least(jobs.not_before, EXCLUDED.not_before)
                                  ELSE jobs.not_before END,
                -- least() skips NULL: the earliest rerun asked for while claimed.
                rerun_at = CASE WHEN jobs.state = 'claimed'
                                THEN least(jobs.rerun_at, EXCLUDED.not_before)
                                ELSE jobs.rerun_at END,
                payload = jobs.payload || EXCLUDED.payload
            RETURNING id, state, not_before
        ), woken AS (
            -- Wake the workers only for work that is due now; a claimed job's rerun wakes them
            -- when the claim completes.
            SELECT pg_notify($5, '') FROM up
            WHERE state = 'pending' AND not_before <= remediator_now()
        )
        SELECT id, (SELECT count(*) FROM woken) AS woken FROM up
        """,
        str(job_kind),
        run_id,
        canonical_json(dict(payload or {})),
        max(0.0, float(delay_s)),
        WORK_CHANNEL,
    )
    return None if row is None else int(row["id"])


class JobQueue(Leases):
    """Jobs on runs: enqueue, claim, extend, complete or release them."""

    async def enqueue_job(
        self,
        kind: str,
        run_id: str,
        *,
        delay_s: float = 0.0,
        payload: Mapping[str, Any] | None = None,
        conn: Any = None,
    ) -> int | None:
        """Ask for a ``kind`` job on ``run_id``, due in ``delay_s`` seconds; returns its id.

        Idempotent per (kind, run): an open pending job keeps the earlier due time, a claimed
        one runs once more after its claim completes; ``payload`` (a JSON object) is merged
        over the open job's, new keys winning. ``conn`` is an open asyncpg connection, to
        enqueue in the same transaction as a change to the run. None when the run does not
        exist. ValueError for an unknown kind.
        """
        with translate():
            if conn is not None:
                return await enqueue(conn, kind, run_id, delay_s=delay_s, payload=payload)
            async with self._pool.acquire() as own:
                return await enqueue(own, kind, run_id, delay_s=delay_s, payload=payload)

    async def claim_jobs(self, owner: str, limit: int, lease_s: float) -> list[ClaimedJob]:
        """Lease up to ``limit`` due jobs to ``owner`` for ``lease_s`` seconds, oldest first.

        Due: pending with ``not_before <= remediator_now()``, or claimed with an expired lease
        (its worker died: that counts as a failed attempt, ``last_error`` says so). At most one
        job per run is leased at any time, and a run's due jobs are taken in id order; a dead
        job is out of the queue and holds nothing back.
        """
        if limit <= 0:
            return []
        async with self._tx() as conn:
            # Two statements, because "this run has no job leased" must be read after taking
            # the run's lock: a claimer holds a transaction-scoped advisory lock per run while
            # it picks, and the second statement's snapshot, taken after the lock, sees every
            # claim an earlier holder committed. Another replica skips a locked run instead of
            # waiting (try-lock); its jobs stay due for the next claim.
            runs = await conn.fetch(
                """
                WITH candidates AS MATERIALIZED (
                    SELECT due.run_id FROM (
                        -- A bounded walk from the head of each claim index, as for events.
                        (SELECT run_id, not_before AS due_at FROM jobs
                         WHERE state = 'pending' AND not_before <= remediator_now()
                         ORDER BY not_before, id LIMIT $2)
                        UNION ALL
                        (SELECT run_id, lease_until AS due_at FROM jobs
                         WHERE state = 'claimed' AND lease_until < remediator_now()
                         ORDER BY lease_until LIMIT $2)
                    ) AS due
                    WHERE NOT EXISTS (SELECT 1 FROM jobs busy
                                      WHERE busy.run_id = due.run_id AND busy.state = 'claimed'
                                        AND busy.lease_until >= remediator_now())
                    GROUP BY due.run_id
                    ORDER BY min(due.due_at)  -- the run whose work waited longest first
                )
                -- MATERIALIZED fences the lock off from the query above (the planner would
                -- push it down into the grouping and lock every candidate run); here it runs
                -- on one candidate after another until LIMIT has enough.
                SELECT run_id FROM candidates
                WHERE pg_try_advisory_xact_lock($3, hashtext(run_id::text))
                LIMIT $1
                """,
                limit,
                limit * 4 + _CLAIM_WINDOW,
                _RUN_LOCK_CLASS,
            )
            if not runs:
                return []
            rows = await conn.fetch(
                f"""
                WITH picked AS (
                    SELECT j.id FROM jobs j
                    WHERE j.run_id = ANY($3::uuid[]) AND {due_sql("j")}
                      -- The oldest due job of its run ...
                      AND j.id = (SELECT min(o.id) FROM jobs o
                                  WHERE o.run_id = j.run_id AND {due_sql("o")})
                      -- ... and none while another job of the run is leased.
                      AND NOT EXISTS (SELECT 1 FROM jobs busy
                                      WHERE busy.run_id = j.run_id AND busy.state = 'claimed'
                                        AND busy.lease_until >= remediator_now())
                    FOR UPDATE OF j SKIP LOCKED
                )
                UPDATE jobs j
                SET {claim_assignments("j", "$2")}
                FROM picked WHERE j.id = picked.id
                RETURNING {_JOB_COLUMNS}, j.lease_owner
                """,
                owner,
                float(lease_s),
                [r["run_id"] for r in runs],
            )
        return [job_from_row(r) for r in sorted(rows, key=lambda r: r["id"])]

    async def hold_back_job(self, kind: str, run_id: str, delay_s: float) -> bool:
        """Make the pending ``kind`` job of ``run_id`` due no sooner than ``delay_s`` seconds
        from now (database clock); True when there was one. A claimed job is left alone (its
        worker holds it), and a due time already later stays: only ever pushed back. For a
        pass that runs the run's follow-up steps while that job is their safety net
        (``pipeline.holdback``)."""
        with translate():
            row = await self._pool.fetchval(
                """UPDATE jobs SET not_before = greatest(
                           not_before, remediator_now() + make_interval(secs => $3))
                   WHERE kind = $1 AND run_id = $2::uuid AND state = 'pending'
                   RETURNING id""",
                str(JobKind(kind)),
                run_id,
                max(0.0, float(delay_s)),
            )
        return row is not None

    async def extend_job_lease(
        self, job_id: int, owner: str, attempts: int, lease_s: float
    ) -> bool:
        """Push the lease forward; False when ``owner`` no longer holds it under its claim
        ``attempts`` (``ClaimedJob.attempts``: the job's count of claims as the claim left
        it, which names the claim among the same owner's claims of the job)."""
        return await self._extend(JOBS, job_id, owner, attempts, lease_s)

    async def complete_job(self, job_id: int, owner: str, attempts: int) -> bool:
        """Mark a claimed job done; False when ``owner`` lost the lease of its claim
        ``attempts`` meanwhile (another claim since, the same owner's included).

        A job asked for again while it was claimed goes back to pending instead, due at the
        earliest time asked for, with its failures counted afresh. Its ``attempts`` go on
        from where they are: lowered, a claim after it would have the number of a claim
        before it, whose statement still on its way would settle it (fence.py).
        """
        with translate():
            row = await self._pool.fetchrow(
                f"""
                WITH settled AS (
                    UPDATE jobs SET
                        state = CASE WHEN rerun_at IS NULL THEN 'done' ELSE 'pending' END,
                        done_at = CASE WHEN rerun_at IS NULL THEN remediator_now() END,
                        not_before = coalesce(rerun_at, not_before),
                        failures = CASE WHEN rerun_at IS NULL THEN failures ELSE 0 END,
                        last_error = CASE WHEN rerun_at IS NULL THEN last_error END,
                        rerun_at = NULL, lease_owner = NULL, lease_until = NULL
                    WHERE {held_where("$4")}
                    RETURNING id, state, not_before
                ), woken AS (
                    SELECT pg_notify($3, '') FROM settled
                    WHERE state = 'pending' AND not_before <= remediator_now()
                )
                SELECT id, (SELECT count(*) FROM woken) AS woken FROM settled
                """,
                job_id,
                owner,
                WORK_CHANNEL,
                attempts,
            )
        return row is not None

    async def release_job(
        self,
        job_id: int,
        owner: str,
        attempts: int,
        delay_s: float = 0.0,
        error: str | None = None,
    ) -> bool:
        """Back to pending, due after ``delay_s`` (or at a rerun asked for meanwhile, if that
        is earlier); only while ``owner`` still holds the lease under its claim ``attempts``.
        ``error`` is kept as ``last_error`` for the next attempt."""
        return await self._release(JOBS, job_id, owner, attempts, delay_s, error)

    async def hand_back_job(self, job_id: int, owner: str, attempts: int) -> bool:
        """Back to pending, due now, its claim's attempt not counted: claimed, but the worker
        began stopping before its work began. False when ``owner`` no longer holds it under
        its claim ``attempts``."""
        return await self._hand_back(JOBS, job_id, owner, attempts)

    async def jobs_due_count(self) -> int:
        """Jobs waiting for a worker now: pending and due, or leased with the lease run out."""
        with translate():
            value: int = await self._pool.fetchval(
                """SELECT (SELECT count(*) FROM jobs
                           WHERE state = 'pending' AND not_before <= remediator_now())
                        + (SELECT count(*) FROM jobs
                           WHERE state = 'claimed' AND lease_until < remediator_now())"""
            )
        return value

    async def next_job_due(self) -> datetime | None:
        """When the earliest pending job is due (database clock); None when none is pending."""
        return await self._next_due(JOBS)

    async def get_job(self, job_id: int) -> dict[str, Any] | None:
        """One job with its queue state, for review and tests (payload decoded; one that
        cannot be read back is the stored text, ``payload_unreadable`` saying why)."""
        with translate():
            row = await self._pool.fetchrow(
                f"""SELECT {_JOB_COLUMNS}, j.state, j.not_before, j.lease_owner, j.rerun_at,
                           j.created_at, j.done_at, j.dead_at, j.settled_reason
                    FROM jobs j WHERE j.id = $1""",
                job_id,
            )
        if row is None:
            return None
        payload, why = stored_data(row["payload"])
        return {**dict(row), "payload": payload, **({"payload_unreadable": why} if why else {})}

    async def prune_jobs(self, older_than_s: float) -> int:
        """Retention: delete finished jobs older than the given age. Never touches runs."""
        return await self._prune(JOBS, older_than_s)
