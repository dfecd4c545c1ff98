"""A run's admission and a guard's refusal of it, each audited in the statement or transaction
that records it (mixin of ``Store``; the steps themselves are steps.py)."""

from __future__ import annotations

from datetime import datetime

from receiver.store.audit import append_in_tx, audit_insert_sql
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.fence import LeaseFence, check_held, fence_args, held_sql
from receiver.store.records import Refused
from receiver.store.steps import (
    ENDED_WHILE_STARTED,
    INTERRUPTED,
    NOT_RUN,
    STARTED,
    admitted_data,
)

__all__ = ["Admissions"]


class Admissions(Database):
    """Admissions and refusals of runs (mixin of ``Store``)."""

    async def record_admission(
        self,
        run_id: str,
        guards: tuple[str, ...] | list[str],
        *,
        phase: str = "run",
        fence: int | None = None,
        lease: LeaseFence | None = None,
    ) -> bool:
        """The guards let the run (its ``phase``: 'run', 'resolve' or 'on_failed') through:
        audited as ``run.admitted`` with the guards asked, in order, and ``fence``, the target
        lock's. False when the run does not exist. ``lease``: the claim the write is made
        under; LeaseLost, nothing written, once its owner lost it (fence.py)."""
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""WITH held AS ({held_sql("$2", "$3", "$4")})
                    SELECT held.ok, (SELECT fingerprint FROM runs WHERE id = $1::uuid)
                    FROM held""",
                run_id,
                *fence_args(lease),
            )
            check_held(row["ok"], lease, f"the admission of run {run_id}")
            fingerprint = row["fingerprint"]
            if fingerprint is None:
                return False
            await append_in_tx(
                conn, "run.admitted", run_id, fingerprint, admitted_data(guards, phase, fence)
            )
        return True

    async def record_refusal(
        self,
        run_id: str,
        guard: str,
        reason: str,
        retry_at: datetime | None,
        lease: LeaseFence | None = None,
    ) -> bool:
        """A guard said no: the run is REFUSED, with the guard's name and when it may pass; its
        steps still to run are ``not_run``, and ``run.refused`` is audited. One statement (one
        round trip, committed on its own): a storm refuses most of its runs. False when the run
        does not exist. ``lease``: the claim it is made under; LeaseLost, nothing written, once
        its owner lost it (fence.py)."""
        refused = Refused(guard, reason, retry_at)
        with translate():
            row = await self._pool.fetchrow(
                f"""
                WITH held AS ({held_sql("$10", "$11", "$12")}),
                refused AS (
                    UPDATE runs SET outcome = 'refused', refusal_guard = $2, refusal_reason = $3,
                                    retry_at = $4,
                                    finished_at = coalesce(finished_at, remediator_now())
                    WHERE id = $1::uuid AND (SELECT ok FROM held) RETURNING id, fingerprint
                ), not_run AS (
                    UPDATE steps SET outcome = $7, message = $5
                    WHERE run_id IN (SELECT id FROM refused) AND phase = 'run'
                      AND outcome IN ('pending', 'awaiting_approval')
                ), interrupted AS (
                    UPDATE steps SET outcome = $8, message = $9 || steps.message || '; ' || $5
                    WHERE run_id IN (SELECT id FROM refused) AND phase = 'run'
                      AND outcome = '{STARTED}'
                ), audited AS (
                    {
                    audit_insert_sql(
                        "refused",
                        kind="'run.refused'",
                        run_id="refused.id",
                        fingerprint="refused.fingerprint",
                        data="$6",
                    )
                }
                )
                SELECT (SELECT count(*) FROM refused) AS count, held.ok FROM held
                """,
                run_id,
                *refused.columns(),
                NOT_RUN,
                INTERRUPTED,
                ENDED_WHILE_STARTED,
                *fence_args(lease),
            )
        assert row is not None  # held is one row
        check_held(row["ok"], lease, f"the refusal of run {run_id}")
        return bool(row["count"])
