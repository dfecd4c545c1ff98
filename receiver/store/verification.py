"""How a run's verification ends: verified, failed (not resolved in time), failed (recurred).

A run waits in ``verifying`` once its steps are done, with a deadline (``verify_deadline``,
from ``verify.resolved_within``) and a ``verify_deadline`` job due then:

- its alert resolves by the deadline (``close_run``): ``verified`` at once, or, when the rule
  has a settle period, still ``verifying`` until ``settle_until`` (the job is due then); a
  later episode of the alert proves that it resolved (``close_run(inferred_from=...)``,
  ``receiver.episodes``), at the latest when the new one began;
- the deadline and the delivery grace after it pass first, with no resolution dated by the
  deadline delivered (``conclude_verification``): ``failed``, ``not_resolved``; one delivered
  and not yet taken up (its event still queued, or dead until an operator retries it) holds
  the verdict until it is taken up and decides, or is dropped;
- settling ends quietly (``conclude_verification``): ``verified``; a resolution taken up while
  the steps still ran makes the job due as they end (``set_run_outcome``), and settles from then;
- either end above, with a resolution dated strictly before the run's first step acted
  (``receiver.store.first_action``: the alert ended by itself, its firing still queued):
  ``resolved_before_action``, outcome ``succeeded``, the rule not credited, nothing to settle;
- the alert fires again on the target while it settles (``fail_recurred``): ``failed``,
  ``recurred``.

Every move is one conditional UPDATE on an outcome of ``verifying``, so a resolve, a deadline
and a recurrence racing each other end the run once. A failure records the rule's
``on_failed`` steps (the escalation ladder, phase ``on_failed``) and a ``resume_run`` job that
takes them up, in the same transaction: a crash cannot lose them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from receiver.model import RunOutcome, StepPlan, VerifyResult
from receiver.store.audit import append_in_tx
from receiver.store.carry import carry
from receiver.store.conclusion import Conclusion
from receiver.store.database import Database
from receiver.store.first_action import CONCLUDE_SQL, EARLY_ERROR_SQL, early_data, first_acted_sql
from receiver.store.jobs import enqueue
from receiver.store.pending_steps import append_pending_steps
from receiver.store.records import JobKind, as_utc

__all__ = ["CLOCK_SKEW_S", "STORED_RESOLUTION_WAIT_S", "Conclusion", "Verification"]

# How far ahead of the store's clock a resolution (an alert's endsAt) may be and still be taken
# as sent (seconds): clocks kept by NTP stay within seconds of each other; five minutes covers
# a host whose sync failed for a while. Further ahead, it is dated when it is stored.
CLOCK_SKEW_S = 300.0


# How often a verification past its deadline looks again while its alert's resolution is
# stored and not taken up (seconds): taken up, the resolution decides by itself (``close_run``);
# this look only notices one dropped by an operator, which then no longer counts.
STORED_RESOLUTION_WAIT_S = 60.0

# A resolution of the run ``r``'s episode is stored since the run began and not taken up yet:
# pending, being taken up, or dead (its attempts used up; an operator may retry it). Dropped or
# taken up, its event is ``done``. As ``RESOLVED_SQL`` (approval_ends.py) counts it.
_STORED_SQL = """EXISTS (SELECT 1 FROM alert_events e
    WHERE e.fingerprint = r.fingerprint AND e.starts_at = r.starts_at
      AND e.status = 'resolved' AND e.received_at >= r.created_at AND e.state <> 'done')"""


class Verification(Database):
    """The end of a run's verification (mixin of ``Store``)."""

    # How late Alertmanager may deliver a notification (seconds; ``EventQueue`` sets it, from
    # ``intake.late_delivery_window``).
    late_delivery_window_s: float
    # The delivery grace after a verification deadline (seconds); None: the window above.
    verify_grace_s: float | None = None

    @property
    def delivery_grace_s(self) -> float:
        """How long after a run's verification deadline a resolution dated by it may still be
        delivered (seconds): Alertmanager sends it at the group's next flush after the alert's
        ``endsAt`` (``group_interval``), later when it retries. ``verify_grace_s``, else the
        late-delivery window (its flush deadline: group_interval plus peer timeouts)."""
        grace = self.verify_grace_s
        return self.late_delivery_window_s if grace is None else grace

    async def close_run(
        self,
        run_id: str,
        resolved_at: datetime | None,
        *,
        inferred_from: str | None = None,
        defer_undo: bool = False,
    ) -> str | None:
        """The alert resolved at ``resolved_at`` (its endsAt; None: it gave none): stamp the
        run's resolved_at and its time to resolve (from the run's creation). Returns the run's
        outcome after closing, None when the run does not exist or was already closed
        (idempotent).

        ``inferred_from``: no resolution of the run's episode came; a later episode of the
        alert (this ``startsAt``, passed as ``resolved_at`` too: the latest its episode can
        have ended) proves it ended (``receiver.episodes``). Kept on the run
        (``resolution_inferred_from``) and in the ``run.closed`` audit row. ``defer_undo``:
        the run's on_resolved steps wait for the alert's next resolution (``undo_deferred``,
        taken up by ``carry_undo``).

        A run that already failed ``not_resolved`` whose resolution comes later, dated by its
        deadline (delivered after the deadline and its delivery grace), keeps its verdict; its
        error and the audit row say that the resolution came late and when it was dated.

        An endsAt more than ``CLOCK_SKEW_S`` ahead of ``remediator_now()`` (the clock the run's
        creation and deadline were set by) is dated at that now: Alertmanager calls an alert
        resolved only once its endsAt has passed, so a resolution still ahead is a sender's
        clock running ahead of ours. Within that skew it is kept as sent; far ahead it is a
        hand-made notification, whose time to resolve would be years and whose deadline would
        be missed. This also keeps ``infinity`` out, which asyncpg sends for Python's largest
        datetime (``9999-12-31T23:59:59.999999Z``), whose time to resolve the audit row's
        jsonb cannot hold. Dating it by the worker's clock instead would judge a deadline set
        by the database's against another clock.

        A VERIFYING run that resolved by its deadline becomes VERIFIED, or, with a settle
        period, settles until ``remediator_now() + settle_s`` (its deadline job is due then);
        but one whose resolution (after the clamp; an inferred one at the latest it can have
        been) is dated strictly before its first step acted (``first_action``) becomes
        SUCCEEDED, ``resolved_before_action``, at once: no settling, its error and the audit
        row saying when each happened and that the rule is not credited. One
        that resolved after its deadline stays VERIFYING for the due job to fail. Other outcomes
        are kept; a RUNNING run gets a ``resume_run`` job, which ends it ``cancelled`` if it is
        still open when it comes (``Store.end_resolved_run``)."""
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""
                WITH locked AS (
                    SELECT id, outcome, verify_deadline,
                           CASE WHEN $2::timestamptz IS NULL
                                  OR $2::timestamptz > remediator_now()
                                                       + make_interval(secs => $3)
                                THEN remediator_now() ELSE $2::timestamptz END AS at,
                           {first_acted_sql("runs")} AS acted_at
                    FROM runs WHERE id = $1::uuid AND resolved_at IS NULL FOR UPDATE
                ), prior AS (
                    SELECT id, at, acted_at,
                           outcome = 'verifying'
                               AND (verify_deadline IS NULL OR at <= verify_deadline) AS in_time,
                           coalesce(at < acted_at, false) AS early
                    FROM locked
                )
                UPDATE runs SET
                    resolution_inferred_from = $4::text,
                    undo_deferred = $5::boolean,
                    error = CASE WHEN runs.outcome = 'failed'
                                      AND runs.verify_result = 'not_resolved'
                                      AND prior.at <= runs.verify_deadline
                                 THEN coalesce(runs.error || '; ', '')
                                      || 'its resolution, dated '
                                      || to_char(prior.at AT TIME ZONE 'UTC',
                                                 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                                      || ' (within the window), was delivered only at '
                                      || to_char(remediator_now() AT TIME ZONE 'UTC',
                                                 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                                      || ', after the deadline and its delivery grace: the '
                                      || 'verdict stands'
                                 WHEN in_time AND early
                                 THEN coalesce(runs.error || '; ', '') || {EARLY_ERROR_SQL}
                                 ELSE runs.error END,
                    resolved_at = prior.at,
                    time_to_resolve_s = greatest(0, extract(epoch FROM (prior.at - created_at))),
                    outcome = CASE WHEN in_time AND early THEN 'succeeded'
                                   WHEN in_time AND settle_s IS NULL THEN 'verified'
                                   ELSE outcome END,
                    verify_result = CASE WHEN in_time AND early THEN 'resolved_before_action'
                                         WHEN in_time AND settle_s IS NULL THEN 'verified'
                                         ELSE verify_result END,
                    finished_at = CASE WHEN in_time AND (early OR settle_s IS NULL)
                                       THEN coalesce(finished_at, remediator_now())
                                       ELSE finished_at END,
                    -- Nothing to settle for a resolution the steps cannot have caused.
                    settle_until = CASE WHEN in_time AND NOT early AND settle_s IS NOT NULL
                                        THEN remediator_now() + make_interval(secs => settle_s)
                                        ELSE settle_until END
                FROM prior WHERE runs.id = prior.id
                RETURNING runs.fingerprint, runs.outcome, runs.time_to_resolve_s,
                          runs.settle_until, runs.settle_s, runs.resolved_at, runs.error,
                          prior.acted_at, runs.verify_result,
                          runs.resolved_at <= runs.verify_deadline AS dated_in
                """,
                run_id,
                resolved_at,
                CLOCK_SKEW_S,
                inferred_from,
                defer_undo,
            )
            if row is None:
                return None
            data: dict[str, Any] = {
                "resolved_at": as_utc(row["resolved_at"]).isoformat(),
                "outcome": row["outcome"],
                "time_to_resolve_s": row["time_to_resolve_s"],
            }
            if inferred_from is not None:
                data["inferred_from_episode"] = inferred_from
                data["undo_deferred"] = defer_undo
            if row["verify_result"] == VerifyResult.NOT_RESOLVED and row["dated_in"]:
                data["delivered_after_verdict"] = True
            if row["verify_result"] == VerifyResult.RESOLVED_BEFORE_ACTION:
                data["verify_result"] = row["verify_result"]
                data["first_step_acted_at"] = as_utc(row["acted_at"]).isoformat()
                data["error"] = row["error"]
            if row["outcome"] == RunOutcome.VERIFYING and row["settle_until"] is not None:
                data["settle_until"] = as_utc(row["settle_until"]).isoformat()
                await enqueue(conn, JobKind.VERIFY_DEADLINE, run_id, delay_s=row["settle_s"])
            if row["outcome"] == RunOutcome.RUNNING:
                # Its worker may have stopped in it with nothing left to take it up (its
                # firing event dead): this job ends it (pipeline.jobs), once no other job of
                # the run holds it; one that finishes it first leaves this one nothing to do.
                await enqueue(conn, JobKind.RESUME_RUN, run_id)
            await append_in_tx(conn, "run.closed", run_id, row["fingerprint"], data)
        outcome: str = row["outcome"]
        return outcome

    async def record_undo(self, run_id: str, steps: Sequence[StepPlan]) -> None:
        """Record ``steps`` (the run's on_resolved plan) as the run's pending ``resolve``
        steps, numbered after every step the run has, as its on_failed steps are (``_fail``):
        approvals are keyed by run and step index, so an on_resolved step's approval never
        meets that of a run step. Once per run: a run that has resolve steps already (a
        retried resolved event) keeps them, and their numbers."""
        if not steps:
            return
        async with self._tx() as conn:
            # The run's row first: two deliveries of its resolution number the steps once.
            await conn.execute("SELECT 1 FROM runs WHERE id = $1::uuid FOR UPDATE", run_id)
            base = await conn.fetchval(
                """SELECT CASE WHEN bool_or(phase = 'resolve') THEN NULL
                               ELSE coalesce(max(idx), -1) + 1 END
                   FROM steps WHERE run_id = $1::uuid""",
                run_id,
            )
            if base is None:
                return
            await append_pending_steps(conn, run_id, "resolve", steps, base=base)

    async def conclude_verification(
        self, run_id: str, escalation: Sequence[StepPlan] = (), *, grace_s: float | None = None
    ) -> Conclusion | None:
        """The ``verify_deadline`` job: end a VERIFYING run whose time has come.

        Not resolved by its deadline: FAILED (``not_resolved``), with ``escalation`` recorded
        as its pending on_failed steps; but not before ``grace_s`` seconds after the deadline
        while no resolution is stored (default: ``delivery_grace_s``): Alertmanager delivers a
        resolution at its group's next flush after the alert's ``endsAt`` (``group_interval``,
        plus retries), so one dated by the deadline may still come (``close_run`` then
        verifies the run). A resolution dated after the deadline decides at once. Nor while
        a resolution of the run's episode is stored and not taken up (pending, claimed, or
        dead until an operator retries or drops it): it was delivered, and taken up it
        decides (``close_run``); looked at again every ``STORED_RESOLUTION_WAIT_S``. Resolved in
        time and settled: VERIFIED, or SUCCEEDED (``resolved_before_action``, a ``run.outcome``
        audit row) when the resolution is dated before the first step acted (taken up while
        the run still ran: ``close_run`` decides nothing then; one resolved after the first
        step settles from now, when the rule has a settle period). Not yet due (settling, woken
        early, within the grace): ``wait_s``. None when the run is not verifying (it ended
        some other way). Safe in every replica at once: the row is locked."""
        if grace_s is None:
            grace_s = self.delivery_grace_s
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""SELECT rule, fingerprint, resolved_at, verify_deadline, settle_until,
                          settle_s, verify_within_s, remediator_now() AS now,
                          {_STORED_SQL} AS stored,
                          coalesce(resolved_at < {first_acted_sql("r")}, false) AS early
                   FROM runs r WHERE id = $1::uuid AND outcome = 'verifying' FOR UPDATE""",
                run_id,
            )
            if row is None:
                return None
            now, deadline = row["now"], row["verify_deadline"]
            resolved = row["resolved_at"] is not None and (
                deadline is None or row["resolved_at"] <= deadline
            )
            if not resolved:
                # Only while nothing is stored: a resolution dated after the deadline decided.
                grace = timedelta(seconds=grace_s if row["resolved_at"] is None else 0.0)
                if deadline is not None and deadline + grace > now:
                    wait = deadline + grace - now
                    return Conclusion(row["rule"], wait_s=wait.total_seconds())
                if row["resolved_at"] is None and row["stored"]:
                    # Delivered, not yet taken up (or dead until an operator retries or drops
                    # it): taken up, it decides (close_run); until then no verdict.
                    return Conclusion(row["rule"], wait_s=STORED_RESOLUTION_WAIT_S)
                within = row["verify_within_s"]
                error = (
                    f"the alert did not resolve within {within:g}s of the run's steps "
                    f"(deadline {as_utc(deadline).isoformat() if deadline else 'none'})"
                )
                if row["resolved_at"] is None and grace_s:
                    error += (
                        f"; no resolution came within the delivery grace of {grace_s:g}s after it"
                    )
                return await _fail(conn, run_id, row, VerifyResult.NOT_RESOLVED, error, escalation)
            settle_until = row["settle_until"]
            if settle_until is not None and settle_until > now:
                return Conclusion(row["rule"], wait_s=(settle_until - now).total_seconds())
            if settle_until is None and row["settle_s"] is not None and not row["early"]:
                # Resolved while its steps still ran (``close_run`` settles only a verifying
                # run): it settles from now, as if resolved as it began to verify.
                await conn.execute(
                    """UPDATE runs SET settle_until = remediator_now()
                                                      + make_interval(secs => settle_s)
                       WHERE id = $1::uuid""",
                    run_id,
                )
                return Conclusion(row["rule"], wait_s=row["settle_s"])
            # Verified, unless the resolution is dated before the first step acted (taken up
            # while the run was still running, or stored before this release settled it):
            # decided here, in the statement that ends the run.
            ended = await conn.fetchrow(CONCLUDE_SQL, run_id)
            result = VerifyResult(ended["verify_result"])
            if result is VerifyResult.RESOLVED_BEFORE_ACTION:
                kind, data = "run.outcome", early_data(ended)
            else:
                until = None if settle_until is None else as_utc(settle_until).isoformat()
                kind, data = "run.verified", {"settled_until": until}
            await append_in_tx(conn, kind, run_id, row["fingerprint"], data)
        return Conclusion(row["rule"], result)

    async def carry_undo(
        self, run_id: str, steps: Sequence[StepPlan], *, event_id: int, retry_s: float
    ) -> bool:
        """The alert resolved after a later episode closed the run with its undo deferred
        (``close_run(defer_undo=True)``): record ``steps`` (its on_resolved steps, numbered
        after every step the run has, as ``record_undo`` numbers them: approvals are keyed by
        run and step index) pending in phase ``resolve`` and clear ``undo_deferred``, with a
        ``resume_resolve`` job due in ``retry_s`` seconds that finishes them if this pass stops
        before they ran, and a ``run.undo_carried`` audit row naming the resolution
        (``event_id``). One transaction. False when the run's undo is not deferred (carried
        already: a retried event).

        A step of ``steps`` that this run's resolve phase already did (or may have: the same
        action and params, recorded ok, simulated, started, interrupted, or failed having maybe
        acted) is left out: a firing withdraws only the held step and those after it
        (``withdraw_undo``), and the steps before it must not be done twice. An undo one of
        whose steps failed, was refused or was interrupted ended there: nothing of it is
        recorded again (``stopped_at`` in the audit row)."""
        async with self._tx() as conn:
            return await carry(conn, run_id, steps, event_id=event_id, retry_s=retry_s)

    async def fail_recurred(
        self, run_id: str, event_id: int, escalation: Sequence[StepPlan] = ()
    ) -> Conclusion | None:
        """The alert fired again on the run's target (event ``event_id``) while the run settled:
        FAILED (``recurred``), with ``escalation`` recorded as its on_failed steps. None when
        the run is no longer settling (verified, or failed already: idempotent)."""
        async with self._tx() as conn:
            row = await conn.fetchrow(
                """SELECT rule, fingerprint, settle_until FROM runs
                   WHERE id = $1::uuid AND outcome = 'verifying' AND settle_until IS NOT NULL
                   FOR UPDATE""",
                run_id,
            )
            if row is None:
                return None
            error = (
                f"the alert fired again on the target (event {event_id}) before its settle "
                f"period ended at {as_utc(row['settle_until']).isoformat()}"
            )
            return await _fail(conn, run_id, row, VerifyResult.RECURRED, error, escalation)


async def _fail(
    conn: Any,
    run_id: str,
    run: Mapping[str, Any],
    result: VerifyResult,
    error: str,
    escalation: Sequence[StepPlan],
) -> Conclusion:
    """FAILED with ``result``; the on_failed steps pending, numbered after every step the run
    has (approvals are keyed by run and step index, so an escalation step never meets the
    approval of a run step), and the job that takes them up. ``run`` holds the run's ``rule``
    and ``fingerprint``."""
    await conn.execute(
        """UPDATE runs SET outcome = 'failed', verify_result = $2, error = $3,
                          finished_at = coalesce(finished_at, remediator_now()),
                          escalated_at = remediator_now()
           WHERE id = $1::uuid""",
        run_id,
        result.value,
        error,
    )
    # The job before the first audit row (write_step appends one): the audit head's lock is
    # then taken last and held only until COMMIT, as everywhere else.
    # Always: the follow-up feeds the breaker and announces the failure, steps or none.
    await enqueue(conn, JobKind.RESUME_RUN, run_id)
    await append_pending_steps(conn, run_id, "on_failed", escalation)
    await append_in_tx(
        conn,
        "run.verification_failed",
        run_id,
        run["fingerprint"],
        {"outcome": RunOutcome.FAILED.value, "verify_result": result.value, "error": error},
    )
    return Conclusion(run["rule"], result, escalation=len(escalation))
