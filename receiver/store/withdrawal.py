"""A held undo withdrawn because its alert fired again (``Withdrawals.withdraw_undo``).

An on_resolved step that needs an approval waits for it after the alert resolved
(``awaiting_approval``). If the alert fires again meanwhile (a later episode, or a re-fire of
the same one), approving that step would take the remediation back while the condition is back,
and the new run, planned while the change was still in place, changed nothing and has no undo
of its own. So the firing withdraws it: its pending approval is cancelled (with the reason, for
the approver), the held step and the on_resolved steps after it are recorded ``not_run``, and
the run's undo is deferred (``undo_deferred``) to the alert's next resolution, where
``Verification.carry_undo`` plans it again (and its approval is asked for again). The same
transaction queues the ``finish_end`` job that tells the approvers of each cancelled approval
(store/finish.py): the caller tells them at once, and the job does when it could not (the
channel down, the process gone after the commit), where before the approval message said
"waiting" for good.

An approval given just before the alert fired again leaves the step ``awaiting_approval``
until a worker takes it up, but no longer pending, so the firing does not see it; nor does it
see a step a guard holds (``pending``, no approval). The worker looks whenever it takes such a
step up (``Withdrawals.withdraw_refired_undo``, from receiver.pipeline.refired): if the alert
fires again by the events on record, the undo is withdrawn the same way, an approved approval
cancelled with it. That look is not ordered with the alert's events, so the resolution it
defers the undo to may have been processed meanwhile: it is carried at once then
(``_carry_if_resolved``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from receiver.episodes import Occurrence, fires_again, resolved_since
from receiver.model import ApprovalRecord, Status, StepPlan
from receiver.store.audit import append_in_tx
from receiver.store.carry import carry
from receiver.store.database import Database
from receiver.store.finish import queue_finish
from receiver.store.step_ends import StepEnd, end_steps
from receiver.store.steps import NOT_RUN
from receiver.store.stored_json import decode_object
from receiver.store.undo_plans import kept_undo
from receiver.unreadable import unreadable_text

__all__ = ["WITHDRAWN", "Withdrawals"]

# What the approver and the step's record are told.
WITHDRAWN = "the alert fired again; this undo is carried to its next resolution"


class Withdrawals(Database):
    """Withdrawing held undos (mixin of ``Store``)."""

    async def withdraw_undo(self, run_id: str, *, event_id: int) -> list[ApprovalRecord] | None:
        """The alert of closed run ``run_id`` fired again (event ``event_id``) while an
        on_resolved step of it waits for its approval: in one transaction, under the run's row
        lock (the one ``close_run``, ``record_undo`` and ``carry_undo`` take), the run's
        on_resolved steps still ``pending`` or ``awaiting_approval`` become ``not_run``
        (``WITHDRAWN``), their pending approvals ``cancelled`` (``reason``: ``WITHDRAWN``),
        and the run ``undo_deferred``, audited
        (``run.undo_withdrawn``). Returns the cancelled approvals (to be announced); None when
        nothing was withdrawn: the run is open, its undo deferred already, or no step of it is
        held any more (run, or started: ``start_step`` claims a step under the same condition,
        so a step is either withdrawn or acted on, never both)."""
        async with self._tx() as conn:
            fingerprint = await conn.fetchval(
                """SELECT fingerprint FROM runs
                   WHERE id = $1::uuid AND resolved_at IS NOT NULL AND NOT undo_deferred
                   FOR UPDATE""",
                run_id,
            )
            if fingerprint is None:
                return None
            withdrawn = await _withdraw(conn, run_id, fingerprint, event_id, ("pending",))
        return None if withdrawn is None else withdrawn.approvals

    async def withdraw_refired_undo(self, run_id: str) -> list[ApprovalRecord] | None:
        """An on_resolved step of closed run ``run_id`` not started yet is taken up (approved
        and about to act, or taken up again after a guard held it): if its alert fires again,
        withdraw the undo as ``withdraw_undo`` does, and cancel its approval even if it was
        ``approved`` (the caller is the worker about to act on the step, so nothing acted yet;
        ``decided_by`` and ``decided_at`` keep who approved it and when). Once that commits,
        if the resolution it defers the undo to is on record already, the undo is carried at
        once (``_carry_if_resolved``).

        "Fires again" is ``receiver.episodes.fires_again`` over the alert's events stored
        since the run's own firing: the latest occurrence on record is later than the run's,
        fired, and has no resolution. The events are read in the same transaction, under the
        run's row lock (the one ``withdraw_undo``, ``close_run`` and ``carry_undo`` take); the
        audit row (``run.undo_withdrawn``) names that firing event. This closes what a firing
        cannot see: an approval given just before the alert fired again is no longer pending,
        and a guard-held step has none, so the firing's history read finds no held undo
        (``engine_histories``' ``held`` part), and the step would run while the alert fires.

        Returns the cancelled approvals (to be announced); None when the alert does not fire
        again, the run is open or its undo deferred already, or no step of it is held (so a
        retried job withdraws nothing twice). Raises StoreUnavailable."""
        async with self._tx() as conn:
            run = await conn.fetchrow(
                """SELECT fingerprint, starts_at, refire, coalesce(event_id, 0) AS event_id
                   FROM runs
                   WHERE id = $1::uuid AND resolved_at IS NOT NULL AND NOT undo_deferred
                   FOR UPDATE""",
                run_id,
            )
            if run is None:
                return None
            events = await _occurrences(conn, run["fingerprint"], run["event_id"])
            firing = fires_again(events, run["starts_at"], run["refire"])
            if firing is None:
                return None
            withdrawn = await _withdraw(
                conn, run_id, run["fingerprint"], firing, ("pending", "approved")
            )
        if withdrawn is None:
            return None
        await self._carry_if_resolved(run_id, withdrawn.steps)
        return withdrawn.approvals

    async def _carry_if_resolved(self, run_id: str, withdrawn: Sequence[StepPlan]) -> bool:
        """After a withdrawal committed: if the occurrence it deferred the undo to has
        resolved already, carry the undo now, as that resolution's pass would have
        (``carry``: its steps pending, a ``resume_resolve`` job due at once, audited
        ``run.undo_carried`` naming the resolution). True when it carried.

        Why no resolution is missed. A withdrawal from a job is not ordered with the alert's
        events: the resolution R of the occurrence that fired again may be processed by
        another worker while the withdrawal's transaction is open. R's row in alert_events is
        committed before R is processed (intake stores it; a worker claims it afterwards), and
        R's pass carries the undo only if its history read sees ``undo_deferred``. Either that
        read began after the withdrawal committed, and R's pass carries it; or it began
        before, so R was stored before the withdrawal committed, and this look, a new
        transaction begun after that commit (each statement of READ COMMITTED sees what was
        committed before it), reads R and carries it here. Both may see it: ``carry`` clears
        ``undo_deferred`` conditionally under the run's row lock, so the undo is carried
        once, and run once: only the pass whose carry wrote the steps takes them up (R's
        ``Close`` leaves them to this carry's job when its own carry finds them carried). A
        firing stored after R (the alert fires once more) makes R no longer the latest
        occurrence: nothing is carried, and the undo waits for that one's resolution.

        The steps are those kept with the run (``runs.on_resolved``), as the resolution's
        pass plans them (``receiver.episodes.undo_of``); for a run stored before they were
        kept (migration 0025), the steps just withdrawn. None of them when they cannot be read
        (edited since): the carry's audit row says why."""
        async with self._tx() as conn:
            run = await conn.fetchrow(
                """SELECT fingerprint, starts_at, refire, coalesce(event_id, 0) AS event_id,
                          on_resolved::text AS on_resolved
                   FROM runs WHERE id = $1::uuid AND undo_deferred
                   FOR UPDATE""",
                run_id,
            )
            if run is None:
                return False  # carried already (by the resolution's pass)
            events = await _occurrences(conn, run["fingerprint"], run["event_id"])
            resolution = resolved_since(events, run["starts_at"], run["refire"])
            if resolution is None:
                return False
            kept, why = kept_undo(run["on_resolved"])
            if why:
                why = unreadable_text({"the on_resolved steps kept with the run": why})
            steps = tuple(withdrawn) if kept is None else kept
            if not why and (bad := [s.unreadable for s in steps if s.unreadable]):
                why = bad[0]
            # Due at once: no resolution pass is left to run the steps. Steps that cannot be
            # read (an edit of the table) carry none of the undo, saying why in its audit row,
            # as the resolution's pass would (``episodes.undo_of``): part of an undo, or one
            # with no params, would act on a guess.
            return await carry(
                conn, run_id, () if why else steps, event_id=resolution, retry_s=0.0, why=why
            )


async def _occurrences(conn: Any, fingerprint: str, since: int) -> list[Occurrence]:
    """The alert's events from its run's own firing (``since``) on, as ``fires_again`` reads
    them. Events of later occurrences are stored after the run's own firing (an event of an
    older episode than one on record creates no run), so the read starts there."""
    rows = await conn.fetch(
        """SELECT id, starts_at, refire, status FROM alert_events
           WHERE fingerprint = $1 AND id >= $2""",
        fingerprint,
        since,
    )
    return [Occurrence(r["id"], r["starts_at"], r["refire"], Status(r["status"])) for r in rows]


@dataclass(frozen=True, slots=True)
class _Withdrawn:
    """What ``_withdraw`` did: the approvals it cancelled, the steps it recorded ``not_run``."""

    approvals: list[ApprovalRecord]
    steps: tuple[StepPlan, ...]


async def _withdraw(
    conn: Any, run_id: str, fingerprint: str, event_id: int, states: tuple[str, ...]
) -> _Withdrawn | None:
    """The body of both withdrawals, inside their transaction, the run's row locked: the held
    on_resolved steps ``not_run``, their approvals in one of ``states`` ``cancelled``, the run
    ``undo_deferred``, each audited. None when no step was held any more."""
    message = f"withdrawn: {WITHDRAWN} (event {event_id})"
    # Locked as an UPDATE would lock them (phase_stop.py says why).
    steps = await conn.fetch(
        """SELECT idx, action, params::text AS params, needs_approval FROM steps
           WHERE run_id = $1::uuid AND phase = 'resolve'
             AND outcome IN ('pending', 'awaiting_approval')
           ORDER BY idx
           FOR UPDATE""",
        run_id,
    )
    if not steps:
        return None
    ends = [StepEnd(s["idx"], s["action"], s["params"], NOT_RUN, message) for s in steps]
    # An approved one keeps who approved it and when (decided_by, decided_at).
    cancelled = await end_steps(
        conn,
        run_id,
        fingerprint,
        "resolve",
        ends,
        approvals_of=[e.idx for e in ends],
        reason=WITHDRAWN,
        states=states,
    )
    if cancelled:
        # The approvers' notices, sent by the caller at once and by this job when it cannot
        # (the channel down, the process gone after the commit: finish.py). No slot: the
        # run acted, and its change stays until the carried undo takes it back.
        await queue_finish(conn, run_id, refund=False, notices=[a.id for a in cancelled])
    await conn.execute("UPDATE runs SET undo_deferred = true WHERE id = $1::uuid", run_id)
    await append_in_tx(
        conn,
        "run.undo_withdrawn",
        run_id,
        fingerprint,
        {
            "event_id": event_id,
            "steps": sorted(s["idx"] for s in steps),
            "approvals": [a.id for a in cancelled],
            "reason": WITHDRAWN,
        },
    )
    return _Withdrawn(approvals=cancelled, steps=tuple(_plan(s) for s in sorted(steps, key=_idx)))


def _plan(row: Any) -> StepPlan:
    """A withdrawn step (a row of ``_withdraw``'s read) as planned; params that cannot be read
    (edited since: ``stored_json``) are said in its ``unreadable``, and carry nothing."""
    params, why = decode_object("params", row["params"])
    return StepPlan(
        index=row["idx"],
        action=row["action"],
        params=params or {},
        needs_approval=row["needs_approval"],
        unreadable=unreadable_text({"params": why}) if why else "",
    )


def _idx(row: Any) -> int:
    idx: int = row["idx"]
    return idx
