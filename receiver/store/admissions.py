"""A run's admission and a guard's refusal of it, each audited in the statement or transaction
that records it (mixin of ``Store``; the steps themselves are steps.py). A refusal ends the
approvals of the run's steps still open with the run (``record_refusal``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.model import ApprovalRecord, RunOutcome
from receiver.store.approval_ends import RESOLVED_SQL
from receiver.store.approvals import approval_audit, cancel_approvals
from receiver.store.audit import append_in_tx, audit_insert_sql
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.fence import LeaseFence, check_held, fence_args, held_sql
from receiver.store.finish import (
    admitted_release,
    admitted_token,
    drew_budget,
    queue_finish,
    release_entry,
)
from receiver.store.records import Refused
from receiver.store.steps import (
    ENDED_WHILE_STARTED,
    INTERRUPTED,
    NOT_RUN,
    STARTED,
    admitted_data,
)

__all__ = ["Admissions", "RecordedRefusal", "refused_reason"]


@dataclass(frozen=True, slots=True)
class RecordedRefusal:
    """What ``record_refusal`` wrote: whether it refused the run (``found``), and the approvals
    of the run's steps it cancelled with it (``approvals``), for the approvers to be told."""

    found: bool
    approvals: list[ApprovalRecord]


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
        expect: RunOutcome | None = None,
        budget_drawn: bool = False,
        lock_token: str | None = None,
    ) -> bool:
        """The guards let the run (its ``phase``: 'run', 'resolve' or 'on_failed') through:
        audited as ``run.admitted`` with the guards asked, in order, ``fence``, the target
        lock's, and ``lock_token``, the lock's token (and ``budget_drawn``: this admission drew
        a budget slot of its own; ``admitted_data``). False when the run does not exist.
        ``lease``: the claim the write is made under; LeaseLost, nothing written, once its
        owner lost it (fence.py).

        ``expect``: a run taken up again (phase 'run') is admitted only while its outcome is
        still the one it was taken up with and its alert has not resolved (``RESOLVED_SQL``: a
        resolution taken up, or stored and not yet), and moves to ``running`` in the same
        statement (``started_at`` stamped once; a ``run.outcome`` row unless it was running
        already). False, nothing written, otherwise: another worker ended it (its alert's
        resolution cancels a run never admitted), and an admission recorded then would have
        set an ended run running again; or its steps would act on an alert that is over; a
        ``finish_end`` job is then queued to give ``lock_token`` (and a slot the run never
        used) back should the caller not (``stages.Admit``)."""
        async with self._tx() as conn:
            if expect is None:
                sql = """SELECT fingerprint FROM runs WHERE id = $1::uuid"""
            else:
                sql = f"""UPDATE runs r SET outcome = 'running',
                                         started_at = coalesce(started_at, remediator_now())
                          WHERE r.id = $1::uuid AND r.outcome = $6 AND (SELECT ok FROM held)
                            AND NOT {RESOLVED_SQL}
                          RETURNING r.fingerprint"""
            row = await conn.fetchrow(
                f"""WITH held AS ({held_sql("$2", "$3", "$4", "$5")}), found AS ({sql})
                    SELECT held.ok, (SELECT fingerprint FROM found) FROM held""",
                run_id,
                *fence_args(lease),
                *([] if expect is None else [expect.value]),
            )
            check_held(row["ok"], lease, f"the admission of run {run_id}")
            fingerprint = row["fingerprint"]
            if fingerprint is None:
                if expect is not None and lock_token:
                    # Ended, or its alert resolved, while its guards were asked: the caller
                    # gives this admission's lock (and slot) back, and so does the job
                    # queued here when it cannot (finish.py); no other pass knows the token.
                    await queue_finish(conn, run_id, release=release_entry(lock_token))
                return False
            data = admitted_data(
                guards, phase, fence, budget_drawn=budget_drawn, lock_token=lock_token
            )
            await append_in_tx(conn, "run.admitted", run_id, fingerprint, data)
            if expect is not None and expect is not RunOutcome.RUNNING:
                await append_in_tx(
                    conn, "run.outcome", run_id, fingerprint, {"outcome": RunOutcome.RUNNING.value}
                )
        return True

    async def follow_up_drew_budget(self, run_id: str, phase: str) -> bool:
        """Whether an admission of the run's follow-up ``phase`` ('on_failed': its escalation)
        drew a global budget slot of its own (its ``run.admitted`` row says
        ``budget_drawn``): the run's slot had left the window by then, so the one the window
        holds under the run's id is the follow-up's, not the run's."""
        with translate():
            return await drew_budget(self._pool, run_id, phase)

    async def admitted_lock(self, run_id: str, phase: str = "run") -> str | None:
        """The target lock's token that the last admission of the run's ``phase`` took (its
        ``run.admitted`` row's ``lock_token``); "" when that admission took no lock or was
        recorded by a version that did not write the token; None when the phase was never
        admitted (as the store knows: an admission Redis took is recorded after). A pass that
        ends the run without holding the lock releases this one, exactly
        (``pipeline.overtaken.release_admitted_lock``)."""
        with translate():
            return await admitted_token(self._pool, run_id, phase)

    async def admitted_since_parked(self, run_id: str, phase: str) -> bool:
        """Whether the last admission of the run's ``phase`` (its ``run.admitted`` row, written
        before any step of that taking-up runs) came after the phase last parked at an
        approval (its ``approval.requested`` row, written before the step it holds could
        run): steps of that admission may then have been let through to their actions.
        False when the phase was never admitted, or parked after its last admission (no step
        of it ran since: it waited for a decision, and the steps before were recorded)."""
        with translate():
            found = await self._pool.fetchval(
                """SELECT coalesce((SELECT max(id) FROM audit_log
                                     WHERE run_id = $1::uuid AND kind = 'run.admitted'
                                       AND data->>'phase' = $2), 0)
                        > coalesce((SELECT max(l.id) FROM audit_log l
                                     JOIN steps s ON s.run_id = l.run_id AND s.phase = $2
                                      AND s.idx::text = l.data->>'step'
                                     WHERE l.run_id = $1::uuid
                                       AND l.kind = 'approval.requested'), 0)""",
                run_id,
                phase,
            )
        return bool(found)

    async def record_refusal(
        self,
        run_id: str,
        guard: str,
        reason: str,
        retry_at: datetime | None,
        lease: LeaseFence | None = None,
        expect: RunOutcome | None = None,
    ) -> RecordedRefusal:
        """A guard said no: the run is REFUSED, with the guard's name and when it may pass; its
        steps still to run are ``not_run``, and ``run.refused`` is audited. One statement (one
        round trip, committed on its own): a storm refuses most of its runs. ``found`` False
        when the run does not exist. ``lease``: the claim it is made under; LeaseLost, nothing
        written, once its owner lost it (fence.py). ``expect``: refuse it only while it has
        that outcome (the one it was taken up with); ``found`` False, nothing written, when
        another worker moved it meanwhile (its alert's resolution ended it).

        A run taken up again with an approval of one of its own steps still open (approved,
        then refused on its way to the step: a pause) ends that approval too, in the same
        transaction: ``cancelled`` (who decided and when kept), its reason naming the guard
        (``refused_reason``), audited (``approval.cancelled``) and returned in ``approvals``
        for the approvers to be told. It could never be used again: the run has ended. Only
        that case takes a transaction of its own (``_refuse_with_approvals``), and so does a
        run taken up again (``expect``), admitted before: the transaction queues its
        ``finish_end`` job (finish.py), which gives back the budget slot it never used and
        the target lock of its last admission when the pass that refused it could not (a
        crash, Redis failing after the commit); before, both were the pass's alone."""
        refused = Refused(guard, reason, retry_at)
        if expect is not None:
            return await self._refuse_with_approvals(run_id, refused, lease, expect)
        row = await self._refuse(self._pool, run_id, refused, lease, expect, with_approvals=False)
        check_held(row["ok"], lease, f"the refusal of run {run_id}")
        if row["open_approvals"]:
            return await self._refuse_with_approvals(run_id, refused, lease, expect)
        return RecordedRefusal(bool(row["count"]), [])

    async def _refuse_with_approvals(
        self, run_id: str, refused: Refused, lease: LeaseFence | None, expect: RunOutcome | None
    ) -> RecordedRefusal:
        """``record_refusal`` of a run one of whose own steps has an approval still open, or
        taken up again: the refusal, the end of those approvals and the ``finish_end`` job
        of what follows in one transaction."""
        why = refused_reason(refused.guard, refused.reason)
        async with self._tx() as conn:
            row = await self._refuse(conn, run_id, refused, lease, expect, with_approvals=True)
            check_held(row["ok"], lease, f"the refusal of run {run_id}")
            if not row["count"]:
                return RecordedRefusal(False, [])
            ran = await conn.fetchrow(
                """SELECT r.fingerprint, r.started_at IS NOT NULL AS admitted,
                          array(SELECT s.idx FROM steps s
                                WHERE s.run_id = r.id AND s.phase = 'run') AS steps
                   FROM runs r WHERE r.id = $1::uuid""",
                run_id,
            )
            cancelled = await cancel_approvals(
                conn, run_id, list(ran["steps"]), why, ["pending", "approved"]
            )
            for approval in cancelled:
                data = approval_audit(approval, reason=why)
                await append_in_tx(conn, "approval.cancelled", run_id, ran["fingerprint"], data)
            # The approvers' notices, and for a run admitted before its unused slot and its
            # last admission's lock, given, sent and released by the pass at once and by
            # this job when it cannot (finish.py).
            admitted = bool(ran["admitted"])
            if cancelled or admitted:
                release = await admitted_release(conn, run_id) if admitted else None
                await queue_finish(
                    conn,
                    run_id,
                    refund=admitted,
                    notices=[a.id for a in cancelled],
                    release=release,
                )
        return RecordedRefusal(True, cancelled)

    @staticmethod
    async def _refuse(
        conn: Any,
        run_id: str,
        refused: Refused,
        lease: LeaseFence | None,
        expect: RunOutcome | None,
        *,
        with_approvals: bool,
    ) -> Any:
        """The refusal's one statement on ``conn`` (a pool: committed on its own). Writes
        nothing when the lease is not held, nor, unless ``with_approvals``, when an approval
        of one of the run's own steps is still open (``open_approvals`` says so: the caller
        then refuses it in a transaction that ends them)."""
        with translate():
            row = await conn.fetchrow(
                f"""
                WITH held AS ({held_sql("$10", "$11", "$12", "$13")}),
                open_approvals AS (
                    SELECT EXISTS (
                        SELECT 1 FROM approvals a JOIN steps s
                          ON s.run_id = a.run_id AND s.idx = a.step_idx AND s.phase = 'run'
                        WHERE a.run_id = $1::uuid AND a.state IN ('pending', 'approved')
                    ) AS open
                ),
                refused AS (
                    UPDATE runs SET outcome = 'refused', refusal_guard = $2, refusal_reason = $3,
                                    retry_at = $4,
                                    finished_at = coalesce(finished_at, remediator_now())
                    WHERE id = $1::uuid AND (SELECT ok FROM held)
                      AND ($14 OR NOT (SELECT open FROM open_approvals))
                      AND ($15::text IS NULL OR outcome = $15)
                    RETURNING id, fingerprint
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
                SELECT (SELECT count(*) FROM refused) AS count, held.ok,
                       NOT $14 AND (SELECT open FROM open_approvals) AS open_approvals
                FROM held
                """,
                run_id,
                *refused.columns(),
                NOT_RUN,
                INTERRUPTED,
                ENDED_WHILE_STARTED,
                *fence_args(lease),
                with_approvals,
                None if expect is None else expect.value,
            )
        assert row is not None  # held is one row
        return row


def refused_reason(guard: str, reason: str) -> str:
    """Why an approval of a refused run was cancelled (its notice reads "Approval cancelled,
    <this>"): the guard that refused the run, and its reason."""
    return f"the run was refused by the {guard} guard ({reason})"
