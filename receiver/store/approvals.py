"""Approvals of risky steps: requested, decided once, expired, cancelled, superseded.

The state machine's rules are ``receiver.approvals.state``; here each move is one conditional
UPDATE, so concurrent deciders cannot both win (research/alertmanager-protocol.md §5.2: "single
use, atomically"). A move and everything that follows from it commit together: its audit row,
the run's new outcome (rejected, expired, cancelled) and the held step's, and the job that
takes the run up again after an approval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from receiver.model import ApprovalRecord, ApprovalState, RunOutcome, Target
from receiver.store.approval_ends import RESOLVED_SQL as _RESOLVED
from receiver.store.approval_ends import UNDO_SQL as _UNDO
from receiver.store.approval_ends import end_run
from receiver.store.audit import append_in_tx
from receiver.store.canonical import canonical_json
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.fence import LeaseFence, check_held, fence_args, held_sql
from receiver.store.finish import queue_finish
from receiver.store.jobs import enqueue
from receiver.store.records import JobKind, as_utc
from receiver.store.stored_json import OBJECT, decode_columns

__all__ = [
    "APPROVAL_LIMIT",
    "Approvals",
    "approval_audit",
    "cancel_approvals",
]

APPROVAL_LIMIT = 500

_COLUMNS = """
    a.id::text AS id, a.run_id::text AS run_id, a.step_idx, a.rule, a.target_kind,
    a.target_namespace, a.target_name, a.action, a.risk, a.plan::text AS plan, a.plan_hash,
    a.context::text AS context, a.requested_at, a.expires_at, a.state, a.decided_by,
    a.decided_at, a.channel, a.source_ip, a.user_agent, a.token_id, a.reason
"""

_SHAPES = {"plan": OBJECT, "context": OBJECT}

# _RESOLVED (the run's alert has resolved) and _UNDO (an on_resolved step's approval) are
# receiver.store.approval_ends'.


def _record(row: Mapping[str, Any]) -> ApprovalRecord:
    """An approval from a row of ``_COLUMNS``: a plan or context that cannot be read back (an
    edit of the table) is ``{}``, marked in ``unreadable`` (``stored_json``). Raising here,
    or a plan or context of another shape read as written, answered 500 to every list, link
    and decision that met the row."""
    data, unreadable = decode_columns(row, _SHAPES)
    return ApprovalRecord(
        id=row["id"],
        run_id=row["run_id"],
        step_idx=row["step_idx"],
        rule=row["rule"],
        target=Target(row["target_kind"], row["target_namespace"], row["target_name"]),
        action=row["action"],
        risk=row["risk"],
        plan=data["plan"] or {},
        plan_hash=row["plan_hash"],
        context=data["context"] or {},
        requested_at=row["requested_at"],
        expires_at=row["expires_at"],
        state=ApprovalState(row["state"]),
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        channel=row["channel"],
        source_ip=row["source_ip"],
        user_agent=row["user_agent"],
        token_id=row["token_id"],
        reason=row["reason"],
        unreadable=unreadable,
    )


def _audit_data(approval: ApprovalRecord, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "approval_id": approval.id,
        "step": approval.step_idx,
        "action": approval.action,
        "state": approval.state.value,
        "plan_hash": approval.plan_hash,
    }
    data.update({k: v for k, v in extra.items() if v is not None})
    return data


# For the other moves of an approval kept elsewhere (``withdrawal.py``, ``phase_stop.py``): the
# same audit data.
approval_audit = _audit_data


async def cancel_approvals(
    conn: Any, run_id: str, steps: Sequence[int], reason: str, states: Sequence[str]
) -> list[ApprovalRecord]:
    """Cancel the approvals of the run's ``steps`` (indexes) that are in one of ``states``
    ('pending', 'approved'), with ``reason``, inside the caller's transaction: the records as
    cancelled, for the caller to audit (``approval.cancelled``) and announce. One decided
    already keeps who decided and when. For a follow-up that ends or is withdrawn
    (``phase_stop.py``, ``withdrawal.py``)."""
    rows = await conn.fetch(
        f"""UPDATE approvals a SET state = 'cancelled',
                                 decided_at = coalesce(a.decided_at, remediator_now()),
                                 reason = $3
            WHERE a.run_id = $1::uuid AND a.state = ANY ($4::text[])
              AND a.step_idx = ANY ($2::int[])
            RETURNING {_COLUMNS}""",
        run_id,
        list(steps),
        reason,
        list(states),
    )
    return [_record(r) for r in rows]


class Approvals(Database):
    """Approvals (mixin of ``Store``); every move is audited in its own transaction."""

    async def request_approval(
        self,
        *,
        run_id: str,
        step_idx: int,
        rule: str,
        target: Target,
        action: str,
        risk: str,
        plan: Mapping[str, Any],
        plan_hash: str,
        context: Mapping[str, Any],
        ttl_s: float,
        lease: LeaseFence | None = None,
    ) -> tuple[ApprovalRecord, bool]:
        """A pending approval of step ``step_idx``, expiring ``ttl_s`` seconds from now (the
        database clock), with a ``resume_run`` job due then to expire it. Returns it and
        whether it is new: a step already waiting keeps its pending approval. ``lease``: the
        claim it is asked under; LeaseLost, nothing written, once its owner lost it: a late
        copy would ask again for a step another worker has seen decided (fence.py)."""
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""
                WITH held AS ({held_sql("$13", "$14", "$15", "$16")}), ins AS (
                    INSERT INTO approvals AS a (run_id, step_idx, rule, target_kind,
                        target_namespace, target_name, action, risk, plan, plan_hash, context,
                        expires_at)
                    SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11::jsonb,
                           remediator_now() + make_interval(secs => $12)
                    FROM held WHERE held.ok
                    ON CONFLICT (run_id, step_idx) WHERE state = 'pending' DO NOTHING
                    RETURNING {_COLUMNS}
                )
                SELECT *, true AS created, true AS ok FROM ins
                UNION ALL
                SELECT {_COLUMNS}, false AS created, held.ok FROM held
                LEFT JOIN approvals a
                  ON a.run_id = $1::uuid AND a.step_idx = $2 AND a.state = 'pending'
                WHERE NOT EXISTS (SELECT 1 FROM ins)
                """,
                run_id,
                step_idx,
                rule,
                target.kind,
                target.namespace,
                target.name,
                action,
                risk,
                canonical_json(dict(plan)),
                plan_hash,
                canonical_json(dict(context)),
                float(ttl_s),
                *fence_args(lease),
            )
            check_held(row["ok"], lease, f"an approval of step {step_idx} of run {run_id}")
            approval = _record(row)
            if row["created"]:
                await enqueue(conn, JobKind.RESUME_RUN, run_id, delay_s=ttl_s)
                await append_in_tx(
                    conn,
                    "approval.requested",
                    run_id,
                    None,
                    _audit_data(approval, expires_at=as_utc(approval.expires_at).isoformat()),
                )
        return approval, bool(row["created"])

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        """One approval; None when there is none (or the id is not a uuid)."""
        with translate():
            try:
                row = await self._pool.fetchrow(
                    f"SELECT {_COLUMNS} FROM approvals a WHERE a.id = $1::uuid", approval_id
                )
            except asyncpg.exceptions.DataError:
                return None
        return None if row is None else _record(row)

    async def latest_approval(self, run_id: str, step_idx: int) -> ApprovalRecord | None:
        """The most recent approval of one step of a run, whatever its state."""
        with translate():
            row = await self._pool.fetchrow(
                f"""SELECT {_COLUMNS} FROM approvals a
                    WHERE a.run_id = $1::uuid AND a.step_idx = $2
                    ORDER BY a.requested_at DESC, a.id DESC LIMIT 1""",
                run_id,
                step_idx,
            )
        return None if row is None else _record(row)

    async def alert_resolved(self, run_id: str, step_idx: int | None = None) -> bool:
        """Whether the alert of ``run_id`` has resolved (see ``_RESOLVED``), as it bears on
        the approval of step ``step_idx``: never for an on_resolved step (``_UNDO``), which
        is asked for because it did."""
        with translate():
            value = await self._pool.fetchval(
                f"""SELECT {_RESOLVED} AND NOT coalesce({_UNDO}, false)
                    FROM runs r LEFT JOIN (SELECT $1::uuid AS run_id, $2::int AS step_idx) a
                         ON true
                    WHERE r.id = $1::uuid""",
                run_id,
                step_idx,
            )
        return bool(value)

    async def list_approvals(
        self,
        *,
        state: ApprovalState | None = None,
        rule: str | None = None,
        run_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> list[ApprovalRecord]:
        """Approvals, newest first; ``since`` bounds requested_at."""
        with translate():
            rows = await self._pool.fetch(
                f"""SELECT {_COLUMNS} FROM approvals a
                    WHERE ($1::text IS NULL OR a.state = $1)
                      AND ($2::text IS NULL OR a.rule = $2)
                      AND ($3::uuid IS NULL OR a.run_id = $3::uuid)
                      AND ($4::timestamptz IS NULL OR a.requested_at >= $4)
                    ORDER BY a.requested_at DESC, a.id DESC LIMIT $5""",
                None if state is None else state.value,
                rule,
                run_id,
                since,
                max(1, min(limit, APPROVAL_LIMIT)),
            )
        return [_record(r) for r in rows]

    async def decide_approval(
        self,
        approval_id: str,
        state: ApprovalState,
        *,
        by: str,
        channel: str,
        source_ip: str | None = None,
        user_agent: str | None = None,
        token_id: str | None = None,
        reason: str | None = None,
        plan_hash: str | None = None,
    ) -> ApprovalRecord | None:
        """Approve or reject a pending, unexpired approval whose alert has not resolved (and,
        with ``plan_hash``, only one that still holds that plan): one UPDATE, so of many
        concurrent deciders exactly one wins. None when nothing matched.

        Approved: a ``resume_run`` job due now (and ``finish_end``, for its notice). Rejected:
        the run ends ``rejected`` and the held step too, with who and why."""
        if state not in (ApprovalState.APPROVED, ApprovalState.REJECTED):
            raise ValueError(f"cannot decide an approval as {state.value}")
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""
                UPDATE approvals a SET state = $2, decided_by = $3, decided_at = remediator_now(),
                    channel = $4, source_ip = $5, user_agent = $6, token_id = $7, reason = $8
                FROM runs r
                WHERE a.id = $1::uuid AND a.state = 'pending' AND a.expires_at > remediator_now()
                  AND ($9::text IS NULL OR a.plan_hash = $9)
                  AND r.id = a.run_id AND ({_UNDO} OR NOT {_RESOLVED})
                RETURNING {_COLUMNS}, r.fingerprint
                """,
                approval_id,
                state.value,
                by,
                channel,
                source_ip,
                user_agent,
                token_id,
                reason,
                plan_hash,
            )
            if row is None:
                return None
            approval = _record(row)
            if state is ApprovalState.APPROVED:  # finish_end: the notice, should this process die
                await enqueue(conn, JobKind.RESUME_RUN, approval.run_id)
                await queue_finish(conn, approval.run_id, refund=False, notices=[approval.id])
            else:
                why = f"rejected by {by}" + (f": {reason}" if reason else "")
                await end_run(conn, approval, RunOutcome.REJECTED, "rejected", why)
            await append_in_tx(
                conn,
                f"approval.{state.value}",
                approval.run_id,
                row["fingerprint"],
                _audit_data(
                    approval,
                    by=by,
                    at=as_utc(approval.decided_at).isoformat() if approval.decided_at else None,
                    channel=channel,
                    source_ip=source_ip,
                    user_agent=user_agent,
                    token_id=token_id,
                    reason=reason,
                ),
            )
        return approval

    async def expire_approvals(self, *, run_id: str | None = None) -> list[ApprovalRecord]:
        """Pending approvals past ``expires_at`` become ``expired`` and their runs end
        ``expired``; returns them (for the notification). ``run_id``: only that run's."""
        return await self._close_pending(
            "expires_at <= remediator_now()", run_id, ApprovalState.EXPIRED, RunOutcome.EXPIRED
        )

    async def cancel_approvals(self, run_id: str) -> list[ApprovalRecord]:
        """The alert resolved: the run's pending approvals become ``cancelled`` and the run,
        if it was waiting for one, ends ``cancelled``. Not those of its on_resolved steps
        (``_UNDO``): the resolution is what they were asked for (the alert firing again is
        what withdraws them: ``Withdrawals.withdraw_undo``). One of its escalation's
        (``on_failed``: the run stays ``failed``) queues a ``resume_run`` job with the
        cancellation, which takes the ladder up again: its steps after the held one that act
        end, its messages are sent (``Store.end_resolved_escalation``)."""
        return await self._close_pending(
            f"NOT {_UNDO}", run_id, ApprovalState.CANCELLED, RunOutcome.CANCELLED
        )

    async def supersede_approval(self, approval_id: str, new_hash: str) -> bool:
        """An approved plan no longer matches live state (its preview hashes to ``new_hash``):
        ``superseded``, and the approvers' notice of it queued with it (``queue_finish``: the
        pass sends it at once, the job when it could not). False when it was not approved."""
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""UPDATE approvals a SET state = 'superseded'
                    WHERE a.id = $1::uuid AND a.state = 'approved' RETURNING {_COLUMNS}""",
                approval_id,
            )
            if row is None:
                return False
            approval = _record(row)
            data = _audit_data(approval, live_plan_hash=new_hash)
            await append_in_tx(conn, "approval.superseded", approval.run_id, None, data)
            await queue_finish(conn, approval.run_id, refund=False, notices=[approval.id])
        return True

    async def _close_pending(
        self, condition: str, run_id: str | None, state: ApprovalState, outcome: RunOutcome
    ) -> list[ApprovalRecord]:
        async with self._tx() as conn:
            rows = await conn.fetch(
                f"""
                WITH due AS (
                    SELECT id FROM approvals a
                    WHERE state = 'pending' AND {condition}
                      AND ($1::uuid IS NULL OR run_id = $1::uuid)
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE approvals a SET state = $2, decided_at = remediator_now()
                FROM due WHERE a.id = due.id
                RETURNING {_COLUMNS}
                """,
                run_id,
                state.value,
            )
            approvals = [_record(r) for r in rows]
            for approval in approvals:
                why = (
                    f"the approval of step {approval.step_idx} expired at "
                    f"{as_utc(approval.expires_at).isoformat()} without a decision"
                    if state is ApprovalState.EXPIRED
                    else f"the alert resolved before step {approval.step_idx} was approved"
                )
                phase = await end_run(conn, approval, outcome, state.value, why)
                if state is ApprovalState.CANCELLED and phase == "on_failed":
                    # The ladder goes on without this step: taken up again now, its steps
                    # after it are ended or sent (``Store.end_resolved_escalation``) rather
                    # than left pending until some other job of the run comes, if one does.
                    await enqueue(conn, JobKind.RESUME_RUN, approval.run_id)
                await append_in_tx(
                    conn, f"approval.{state.value}", approval.run_id, None, _audit_data(approval)
                )
        return approvals
