"""The steps of runs: each write audited in its transaction.

``write_step`` is the one statement that inserts or updates a step; ``Runs.create_run`` uses it
too, so a run and its planned steps are created in one transaction (a run never exists without
the steps it was planned with).

A run's admission and a guard's refusal of it are admissions.py.

``StepWriter.start_step`` marks a step ``started`` before an action that must not run twice
acts (``remediations.base.Action.replay_safe``): one statement that succeeds only for a step
still pending or approved, so of two attempts at one step only one ever acts, and a run taken
up after a crash finds the mark. The mark names its attempt, and sending it again for the same
attempt succeeds too (the first one's answer was lost but it committed): only a mark another
attempt left is an interruption. A started step is never put back to ``pending`` or
``awaiting_approval`` (a retried resolved event re-recording its on_resolved steps, a guard
holding them): only its end, or ``interrupted``, replaces the mark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

from receiver.store.audit import append_in_tx, audit_insert_sql
from receiver.store.canonical import audit_data, canonical_json
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.fence import LeaseFence, check_held, fence_args, held_sql
from receiver.store.stored_json import decode_object
from remediations.base import Outcome

__all__ = [
    "ENDED_WHILE_STARTED",
    "INTERRUPTED",
    "NOT_RUN",
    "STARTED",
    "StepFields",
    "StepStart",
    "StepWriter",
    "admitted_data",
    "mark_not_run",
    "started_message",
    "step_audit",
    "stored_step_audit",
    "write_step",
]

# The outcome of a step its run ended without running (refused by a guard, stopped by an earlier
# step, rejected, expired, cancelled): it will never run, so it does not read ``pending``.
NOT_RUN = "not_run"

# The outcome of a step whose action is acting right now, or was when its worker stopped
# (``StepWriter.start_step``).
STARTED = "started"
# What a step may be marked started from: planned, or held for an approval (and approved).
_STARTABLE = ("pending", "awaiting_approval")


# The outcome a step still ``started`` takes when its run ends without taking it up
# (``remediations.base.Outcome.INTERRUPTED``), and why (``ENDED_WHILE_STARTED`` + the end).
# Only what is known: a worker that stopped in the step and a result lost to a store outage
# both leave it ``started`` (receiver.pipeline.marked reads this text back, ``interruption``).
INTERRUPTED = Outcome.INTERRUPTED.value
ENDED_WHILE_STARTED = (
    "this step's result was never recorded: its worker stopped, or the store was out of "
    "reach; it may have acted, in part or in full; not run again; "
)


async def mark_not_run(conn: Any, run_id: str, why: str) -> None:
    """The run's own steps still ``pending`` (or ``awaiting_approval``: approved, then refused
    by a guard on the way to running) become ``not_run`` saying ``why``; called in the
    transaction that ends the run. A rejected, expired or cancelled approval has already
    ended its step its own way. Its on_resolved and on_failed steps are left alone: they have
    their own occasions. A step still ``started`` (its worker stopped, or its result was lost
    to a store outage) may have acted: it becomes ``interrupted``, never ``not_run``."""
    await conn.execute(
        """UPDATE steps SET outcome = $2, message = $3 || message || '; ' || $4
           WHERE run_id = $1::uuid AND phase = 'run' AND outcome = $5""",
        run_id,
        INTERRUPTED,
        ENDED_WHILE_STARTED,
        why,
        STARTED,
    )
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
    keeps its first value. ``may_have_acted`` (False unless given): a failed step whose failure
    came after its request may have reached its system (``Result.may_have_acted``), a
    possible change as an interrupted step is; each write says it anew."""

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
    may_have_acted: NotRequired[bool]


async def write_step(
    conn: Any, run_id: str, lease: LeaseFence | None = None, **fields: Unpack[StepFields]
) -> None:
    """Insert or update one step on ``conn``, inside the caller's transaction, with its audit
    row; see ``StepFields`` for the fields and their defaults. ``lease``: the claim the write
    is made under; LeaseLost, nothing written, when its owner lost it (fence.py)."""
    idx, action, outcome = fields["idx"], fields["action"], fields["outcome"]
    phase, message = fields.get("phase", "run"), fields.get("message", "")
    params, before, after = fields.get("params"), fields.get("before"), fields.get("after")
    acted = fields.get("may_have_acted", False)
    row = await conn.fetchrow(
        f"""
        WITH held AS ({held_sql("$15", "$16", "$17", "$18")}),
        up AS (
            INSERT INTO steps (run_id, phase, idx, action, params, needs_approval,
                               outcome, message, before, after, attempts, started_at,
                               finished_at, may_have_acted)
            SELECT $1::uuid, $2, $3, $4, coalesce($5::jsonb, '{{}}'::jsonb), $6, $7, $8,
                   $9::jsonb, $10::jsonb, $11, $12, $13, $14
            FROM held WHERE held.ok
            ON CONFLICT (run_id, phase, idx) DO UPDATE SET
                action = EXCLUDED.action, params = coalesce($5::jsonb, steps.params),
                needs_approval = EXCLUDED.needs_approval, outcome = EXCLUDED.outcome,
                message = EXCLUDED.message,
                before = coalesce(EXCLUDED.before, steps.before),
                after = coalesce(EXCLUDED.after, steps.after),
                attempts = greatest(EXCLUDED.attempts, steps.attempts),
                started_at = coalesce(steps.started_at, EXCLUDED.started_at),
                finished_at = coalesce(EXCLUDED.finished_at, steps.finished_at),
                may_have_acted = EXCLUDED.may_have_acted
            -- A started step may have acted: planning or holding it again must not make it
            -- startable a second time (the module docstring).
            WHERE NOT (steps.outcome = 'started'
                       AND EXCLUDED.outcome IN ('pending', 'awaiting_approval'))
            RETURNING run_id
        )
        SELECT held.ok, (SELECT runs.fingerprint FROM up JOIN runs ON runs.id = up.run_id)
        FROM held
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
        acted,
        *fence_args(lease),
    )
    assert row is not None  # held is one row
    check_held(row["ok"], lease, f"step {idx} of {phase} of run {run_id}")
    fingerprint = row["fingerprint"]
    if fingerprint is None:
        return  # a started step kept its mark: nothing was written, nothing to audit
    await append_in_tx(
        conn,
        "step",
        run_id,
        fingerprint,
        step_audit(phase, idx, action, outcome, message, params)
        | {
            "before": None if before is None else dict(before),
            "after": None if after is None else dict(after),
        }
        # Only when it may have: the audit rows of every other step keep their shape.
        | ({"may_have_acted": True} if acted else {}),
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


def stored_step_audit(
    phase: str, idx: int, action: str, outcome: str, message: str, params: str | None
) -> dict[str, Any]:
    """``step_audit`` of a step ended from its row, ``params`` the JSON text the row holds
    (``params::text``). Params that cannot be read back or are not an object (an edit of the
    table: ``stored_json``) are ``{}``, and ``params_unreadable`` says why: the step still
    ends, and its row is still written."""
    value, why = decode_object("params", params)
    data = step_audit(phase, idx, action, outcome, message, value)
    if why is not None:
        data["params_unreadable"] = why
    return data


def admitted_data(
    guards: Sequence[str],
    phase: str = "run",
    fence: int | None = None,
    *,
    budget_drawn: bool = False,
    lock_token: str | None = None,
) -> dict[str, Any]:
    """The data of a ``run.admitted`` audit row: the run's ``phase`` ('run'; 'resolve' for
    on_resolved steps, 'on_failed' for an escalation), the guards asked, in order, and the target
    lock's fence; with ``budget_drawn``, ``"budget_drawn": true``: this admission drew a global
    budget slot of its own (``Admission.budget_drawn``; said of an escalation's, which shares
    its run's slot while that is in the window: ``Store.follow_up_drew_budget``); with
    ``lock_token``, the token the admission took the target lock with, so that a pass ending
    the run after its worker died can release exactly that lock (``Store.admitted_lock``)."""
    data: dict[str, Any] = {"phase": phase, "guards": list(guards), "fence": fence}
    if budget_drawn:
        data["budget_drawn"] = True
    if lock_token:
        data["lock_token"] = lock_token
    return data


def started_message(attempt: str, what: str) -> str:
    """The message of a step marked started by ``attempt`` (an id without parentheses),
    saying ``what`` it does: ``started (attempt <id>): <what>``."""
    prefix = _attempt_prefix(attempt)
    return f"{prefix}: {what}" if what else prefix


def _attempt_prefix(attempt: str) -> str:
    # Closed by its parenthesis: one attempt's id is never read as the start of another's.
    return f"started (attempt {attempt})"


@dataclass(frozen=True, slots=True)
class StepStart:
    """What ``StepWriter.start_step`` found: ``started`` True when this attempt marked the step
    (now, or in an earlier call whose answer was lost) and may act; else the step's ``outcome``
    and ``message`` as they were (``started``: another attempt marked it and never finished it;
    ``""``: no such step)."""

    started: bool
    outcome: str = ""
    message: str = ""
    started_at: datetime | None = None


class StepWriter(Database):
    """Steps (mixin of ``Store``)."""

    async def record_step(
        self, run_id: str, lease: LeaseFence | None = None, **fields: Unpack[StepFields]
    ) -> None:
        """Insert or update step ``idx`` of ``phase`` of a run, audited (``StepFields``);
        ``lease``: LeaseLost, nothing written, when its claim is no longer held (fence.py)."""
        async with self._tx() as conn:
            await write_step(conn, run_id, lease, **fields)

    async def start_step(
        self,
        run_id: str,
        *,
        phase: str,
        idx: int,
        action: str,
        attempt: str,
        what: str,
        started_at: datetime,
        lease: LeaseFence | None = None,
    ) -> StepStart:
        """Mark step ``idx`` of ``phase`` ``started`` by ``attempt``, its message
        ``started_message(attempt, what)``, audited, if it is still pending or awaiting its
        approval: one statement, one round trip, committed on its own before the action acts.
        Two attempts at one step cannot both mark it. Idempotent for one attempt: a step
        ``started`` by this same ``attempt`` (an earlier call committed, its answer was lost) is
        reported marked, and nothing is written again. Returns whether the step is marked by
        this attempt (``started`` True, with the mark's message and time), else what the step
        was. Raises StoreUnavailable; the statement may still have committed. ``lease``: the
        claim it is made under; LeaseLost, nothing marked, once its owner lost it (fence.py)."""
        message = started_message(attempt, what)
        data = audit_data(step_audit(phase, idx, action, STARTED, message, None))
        with translate():
            row = await self._pool.fetchrow(
                f"""
                WITH held AS ({held_sql("$9", "$10", "$11", "$12")}),
                up AS (
                    UPDATE steps SET outcome = '{STARTED}', message = $4,
                                     attempts = steps.attempts + 1,
                                     started_at = $5, finished_at = NULL
                    WHERE run_id = $1::uuid AND phase = $2 AND idx = $3
                      AND outcome = ANY ($6::text[]) AND (SELECT ok FROM held)
                    RETURNING run_id
                ), marked AS (
                    SELECT runs.id, runs.fingerprint FROM up JOIN runs ON runs.id = up.run_id
                ), audited AS (
                    {
                    audit_insert_sql(
                        "marked",
                        kind="'step'",
                        run_id="marked.id",
                        fingerprint="marked.fingerprint",
                        data="$7",
                    )
                }
                )
                SELECT (SELECT count(*) FROM up) AS marked, s.outcome, s.message, s.started_at,
                       coalesce(s.outcome = '{STARTED}' AND starts_with(s.message, $8), false)
                         AS own, held.ok
                FROM held
                LEFT JOIN steps s ON s.run_id = $1::uuid AND s.phase = $2 AND s.idx = $3
                """,
                run_id,
                phase,
                idx,
                message,
                started_at,
                list(_STARTABLE),
                data,
                _attempt_prefix(attempt),
                *fence_args(lease),
            )
        assert row is not None  # the statement always returns its one row
        check_held(row["ok"], lease, f"the start of step {idx} of {phase} of run {run_id}")
        if row["marked"]:
            return StepStart(True, STARTED, message, started_at)
        # The step as it was before this statement (its CTE's update is not visible here).
        return StepStart(
            bool(row["own"]),
            str(row["outcome"] or ""),
            str(row["message"] or ""),
            row["started_at"],
        )
