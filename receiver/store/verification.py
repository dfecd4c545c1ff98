"""How a run's verification ends: its alert resolves (closed), or its deadline passes (failed).

A run that waits in ``verifying`` ends one of these two ways; both are conditional updates, so
a resolve and an expiry racing each other end the run once.
"""

from __future__ import annotations

from datetime import datetime

from receiver.store.audit import append_in_tx
from receiver.store.database import Database
from receiver.store.records import as_utc

__all__ = ["Verification"]


class Verification(Database):
    """The end of a run's verification (mixin of ``Store``)."""

    async def close_run(self, run_id: str, resolved_at: datetime) -> bool:
        """The alert resolved: stamp resolved_at and time to resolve (from the run's creation).

        A VERIFYING run becomes RESOLVED; other outcomes are kept. Idempotent: False when the
        run does not exist or was already closed.
        """
        async with self._tx() as conn:
            row = await conn.fetchrow(
                """
                UPDATE runs SET
                    resolved_at = $2,
                    time_to_resolve_s = greatest(0, extract(epoch FROM ($2 - created_at))),
                    outcome = CASE WHEN outcome = 'verifying' THEN 'resolved' ELSE outcome END,
                    finished_at = CASE WHEN outcome = 'verifying' THEN coalesce(finished_at, now())
                                       ELSE finished_at END
                WHERE id = $1::uuid AND resolved_at IS NULL
                RETURNING fingerprint, outcome, time_to_resolve_s
                """,
                run_id,
                resolved_at,
            )
            if row is None:
                return False
            await append_in_tx(
                conn,
                "run.closed",
                run_id,
                row["fingerprint"],
                {
                    "resolved_at": as_utc(resolved_at).isoformat(),
                    "outcome": row["outcome"],
                    "time_to_resolve_s": row["time_to_resolve_s"],
                },
            )
        return True

    async def expire_verifications(
        self, now: datetime | None = None, *, run_id: str | None = None
    ) -> list[str]:
        """VERIFYING runs past their deadline become FAILED; returns their ids.

        ``run_id``: only that run (the ``verify_deadline`` job's case). Safe to run in every
        replica at once: SKIP LOCKED hands each run to one of them.
        """
        async with self._tx() as conn:
            rows = await conn.fetch(
                """
                WITH due AS (
                    SELECT id FROM runs
                    WHERE outcome = 'verifying' AND verify_deadline <= coalesce($1, now())
                      AND ($2::uuid IS NULL OR id = $2::uuid)
                    ORDER BY verify_deadline
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE runs SET outcome = 'failed', finished_at = coalesce(finished_at, now()),
                                error = 'alert did not resolve before the verify deadline'
                FROM due WHERE runs.id = due.id
                RETURNING runs.id::text AS id, runs.fingerprint, runs.verify_deadline
                """,
                now,
                run_id,
            )
            for row in rows:
                await append_in_tx(
                    conn,
                    "run.verify_expired",
                    row["id"],
                    row["fingerprint"],
                    {"verify_deadline": as_utc(row["verify_deadline"]).isoformat()},
                )
        return [row["id"] for row in rows]
