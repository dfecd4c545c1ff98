"""The steps of runs, and a guard's refusal of a run: each write audited in its transaction.

``write_step`` is the one statement that inserts or updates a step; ``Runs.create_run`` uses it
too, so a run and its planned steps are created in one transaction (a run never exists without
the steps it was planned with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

from receiver.store.audit import append_in_tx, audit_insert_sql
from receiver.store.canonical import canonical_json
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.records import Refused

__all__ = [
    "NOT_RUN",
    "StepFields",
    "StepWriter",
    "admitted_data",
    "mark_not_run",
    "step_audit",
    "write_step",
]

# The outcome of a step its run ended without running (refused by a guard, stopped by an earlier
# step, rejected, expired, cancelled): it will never run, so it does not read ``pending``.
NOT_RUN = "not_run"


async def mark_not_run(conn: Any, run_id: str, why: str) -> None:
    """The run's own steps still ``pending`` (or ``awaiting_approval``: approved, then refused
    by a guard on the way to running) become ``not_run`` saying ``why``; called in the
    transaction that ends the run. A rejected, expired or cancelled approval has already
    ended its step its own way. Its on_resolved and on_failed steps are left alone: they have
    their own occasions."""
    await conn.execute(
        """UPDATE steps SET outcome = $2, message = $3
           WHERE run_id = $1::uuid AND phase = 'run'
             AND outcome IN ('pending', 'awaiting_approval')""",
        run_id,
        NOT_RUN,
        why,
    )


class StepFields(TypedDict):
    """The fields of one step, as ``write_step`` and ``StepWriter.record_step`` take them.

    ``phase`` 'run' (the default), 'resolve' or 'on_failed'; ``params``, ``before`` and
    ``after`` are JSON objects, None (the default) keeping what an earlier write recorded;
    ``needs_approval`` False, ``message`` empty and ``attempts`` 0 unless given; ``started_at``
    keeps its first value."""

    idx: int
    action: str
    outcome: str
    phase: NotRequired[str]
    params: NotRequired[Mapping[str, Any] | None]
    needs_approval: NotRequired[bool]
    message: NotRequired[str]
    before: NotRequired[Mapping[str, Any] | None]
    after: NotRequired[Mapping[str, Any] | None]
    attempts: NotRequired[int]
    started_at: NotRequired[datetime | None]
    finished_at: NotRequired[datetime | None]


async def write_step(conn: Any, run_id: str, **fields: Unpack[StepFields]) -> None:
    """Insert or update one step on ``conn``, inside the caller's transaction, with its audit
    row; see ``StepFields`` for the fields and their defaults."""
    idx, action, outcome = fields["idx"], fields["action"], fields["outcome"]
    phase, message = fields.get("phase", "run"), fields.get("message", "")
    params, before, after = fields.get("params"), fields.get("before"), fields.get("after")
    fingerprint = await conn.fetchval(
        """
        WITH up AS (
            INSERT INTO steps (run_id, phase, idx, action, params, needs_approval,
                               outcome, message, before, after, attempts, started_at,
                               finished_at)
            VALUES ($1::uuid, $2, $3, $4, coalesce($5::jsonb, '{}'::jsonb), $6, $7, $8,
                    $9::jsonb, $10::jsonb, $11, $12, $13)
            ON CONFLICT (run_id, phase, idx) DO UPDATE SET
                action = EXCLUDED.action, params = coalesce($5::jsonb, steps.params),
                needs_approval = EXCLUDED.needs_approval, outcome = EXCLUDED.outcome,
                message = EXCLUDED.message,
                before = coalesce(EXCLUDED.before, steps.before),
                after = coalesce(EXCLUDED.after, steps.after),
                attempts = greatest(EXCLUDED.attempts, steps.attempts),
                started_at = coalesce(steps.started_at, EXCLUDED.started_at),
                finished_at = coalesce(EXCLUDED.finished_at, steps.finished_at)
            RETURNING run_id
        )
        SELECT runs.fingerprint FROM up JOIN runs ON runs.id = up.run_id
        """,
        run_id,
        phase,
        idx,
        action,
        None if params is None else canonical_json(dict(params)),
        fields.get("needs_approval", False),
        outcome,
        message,
        None if before is None else canonical_json(dict(before)),
        None if after is None else canonical_json(dict(after)),
        fields.get("attempts", 0),
        fields.get("started_at"),
        fields.get("finished_at"),
    )
    await append_in_tx(
        conn,
        "step",
        run_id,
        fingerprint,
        step_audit(phase, idx, action, outcome, message, params)
        | {
            "before": None if before is None else dict(before),
            "after": None if after is None else dict(after),
        },
    )


def step_audit(
    phase: str,
    idx: int,
    action: str,
    outcome: str,
    message: str,
    params: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The data of a ``step`` audit row, before and after None (a step that changed nothing
    yet, or a caller that adds them)."""
    return {
        "phase": phase,
        "idx": idx,
        "action": action,
        "outcome": outcome,
        "message": message,
        "params": dict(params or {}),
        "before": None,
        "after": None,
    }


def admitted_data(
    guards: Sequence[str], phase: str = "run", fence: int | None = None
) -> dict[str, Any]:
    """The data of a ``run.admitted`` audit row: the run's ``phase`` ('run'; 'resolve' for
    on_resolved steps, 'on_failed' for an escalation), the guards asked, in order, and the target
    lock's fence."""
    return {"phase": phase, "guards": list(guards), "fence": fence}


class StepWriter(Database):
    """Steps and refusals (mixin of ``Store``)."""

    async def record_step(self, run_id: str, **fields: Unpack[StepFields]) -> None:
        """Insert or update step ``idx`` of ``phase`` of a run, audited (``StepFields``)."""
        async with self._tx() as conn:
            await write_step(conn, run_id, **fields)

    async def record_admission(
        self,
        run_id: str,
        guards: tuple[str, ...] | list[str],
        *,
        phase: str = "run",
        fence: int | None = None,
    ) -> bool:
        """The guards let the run (its ``phase``: 'run', 'resolve' or 'on_failed') through:
        audited as ``run.admitted`` with the guards asked, in order. False when the run does
        not exist."""
        async with self._tx() as conn:
            fingerprint = await conn.fetchval(
                "SELECT fingerprint FROM runs WHERE id = $1::uuid", run_id
            )
            if fingerprint is None:
                return False
            await append_in_tx(
                conn, "run.admitted", run_id, fingerprint, admitted_data(guards, phase, fence)
            )
        return True

    async def record_refusal(
        self, run_id: str, guard: str, reason: str, retry_at: datetime | None
    ) -> bool:
        """A guard said no: the run is REFUSED, with the guard's name and when it may pass; its
        steps still to run are ``not_run``, and ``run.refused`` is audited. One statement (one
        round trip, committed on its own): a storm refuses most of its runs. False when the run
        does not exist."""
        refused = Refused(guard, reason, retry_at)
        with translate():
            count = await self._pool.fetchval(
                f"""
                WITH refused AS (
                    UPDATE runs SET outcome = 'refused', refusal_guard = $2, refusal_reason = $3,
                                    retry_at = $4,
                                    finished_at = coalesce(finished_at, remediator_now())
                    WHERE id = $1::uuid RETURNING id, fingerprint
                ), not_run AS (
                    UPDATE steps SET outcome = $7, message = $5
                    WHERE run_id IN (SELECT id FROM refused) AND phase = 'run'
                      AND outcome IN ('pending', 'awaiting_approval')
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
                SELECT count(*) FROM refused
                """,
                run_id,
                *refused.columns(),
                NOT_RUN,
            )
        return bool(count)
