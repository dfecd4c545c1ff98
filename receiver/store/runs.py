"""Runs: creation (once per rule and occurrence, with their planned steps), outcomes, reads
with their steps, and the paginated run list. Steps are steps.py, admissions and refusals
admissions.py.

Every write that changes a run appends its audit row in the same transaction (audit.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

import asyncpg

from receiver.audit_folds import ANNOUNCED_KEY, REFUSED_KEY
from receiver.model import AlertEvent, RunOutcome, StepPlan, Target
from receiver.store.announcements import ANNOUNCED
from receiver.store.audit import append_in_tx
from receiver.store.canonical import audit_data, canonical_json
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.fence import LeaseFence, check_held, fence_args, held_sql
from receiver.store.finish import admitted_release, queue_finish
from receiver.store.jobs import enqueue
from receiver.store.leases import EventLease
from receiver.store.paging import RunFilters, fetch_run_page
from receiver.store.records import (
    RUN_COLUMNS,
    JobKind,
    Refused,
    RunRecord,
    as_utc,
    run_from_row,
    step_from_row,
)
from receiver.store.run_creation import CREATE_RUN_SQL
from receiver.store.steps import mark_not_run, step_audit
from receiver.store.undo_plans import undo_as_json

__all__ = ["Runs"]

# Outcomes after which a run is finished (finished_at is set when a run reaches one).
_TERMINAL = frozenset(
    {
        RunOutcome.VERIFIED,
        RunOutcome.SUCCEEDED,
        RunOutcome.DRY_RUN,
        RunOutcome.REFUSED,
        RunOutcome.FAILED,
        RunOutcome.REJECTED,
        RunOutcome.EXPIRED,
        RunOutcome.CANCELLED,
    }
)

# The data of the run.outcome row of a run admitted before it was stored: the same for every
# such run, so written once here rather than on each create_run call (a storm's refused runs,
# which never use it, paid for it too).
_RUNNING_AUDIT = audit_data({"outcome": str(RunOutcome.RUNNING)})


class Runs(Database):
    """Create, move and read runs; every change is audited in its own transaction."""

    async def create_run(
        self,
        *,
        rule: str,
        event: AlertEvent,
        target: Target,
        dry_run: bool,
        occurrence: int = 1,
        verify_within_s: float | None = None,
        outcome: RunOutcome = RunOutcome.PENDING,
        data: Mapping[str, Any] | None = None,
        steps: Sequence[StepPlan] = (),
        step_outcome: str = "pending",
        settle_s: float | None = None,
        decision: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        refusal: Refused | None = None,
        admitted: Mapping[str, Any] | None = None,
        announced: Mapping[str, Any] | None = None,
        complete: EventLease | None = None,
        on_resolved: Sequence[StepPlan] | None = None,
        lease: LeaseFence | None = None,
    ) -> str | None:
        """Create the run of (rule, occurrence of ``event``) with its planned ``steps``
        (recorded with ``step_outcome``, each with its description as its message), in one
        statement; ``run_id`` (``run_id_of``) or a random one. With ``refusal`` the run is
        created refused by that guard, its steps ``not_run``, and audited by one ``run.created``
        row that also says what ``record_refusal``'s ``run.refused`` row would (``refused``) and
        the ``announced`` row (``announced``; receiver/audit_folds.py), and lists its steps as
        stored (``steps``, no ``step`` row each, as they never change): the worker asks a new
        run's guards before it stores it. None when the
        run already exists (a duplicate, or a retry whose first attempt created it).
        ``decision``: why these steps (JSON-ready), kept on the run and in its ``run.created``
        audit row. ``on_resolved``: the rule's on_resolved steps, kept on the run
        (``undo_as_json``): what it undoes when its alert resolves, whatever the rules say then
        (None: not kept, as for a run created before 0025; the rule's as loaded then stand in).

        With ``admitted`` (the ``run.admitted`` data, ``admitted_data``) the guards let the run
        through before it was stored: it is created ``running`` and audited as created, each
        step, admitted and moved to running, as ``record_admission`` and ``set_run_outcome``
        would, without their two transactions. ``refusal`` and ``admitted``: ValueError.

        Folded into the same statement, so that a refused event costs one transaction and one
        audit append (issue 12): ``announced``, the data of a ``run.announced`` row that had
        nothing to send (``announced_data``), audited last (a refused run's: in its
        ``run.created`` row) and only if the run is created;
        ``complete``, the event's lease: the event is marked done as
        ``EventQueue.complete_event`` would, and ``complete.completed`` set when it was. It is
        marked done whether or not the run is created: a run another worker stored first ends
        this event all the same (``_OWNED_ELSEWHERE`` in stages.py is a done disposition).

        ``lease``: the claim the run is created under (with ``complete``, that event's claim:
        another, ValueError). LeaseLost, nothing written (no run, no completion), once its
        owner lost it (fence.py): a late copy that landed before the new owner stored the run
        would stand as the run, refused or admitted by the lost owner's guard answer, and the
        new owner, finding it stored, would leave it be (a run stuck running, no step begun)."""
        if refusal is not None and admitted is not None:
            raise ValueError("a run is created refused or admitted, not both")
        fence = lease
        if complete is not None:
            if lease is not None and lease != complete.fence:
                raise ValueError(
                    f"a run is created under one claim: lease {lease} is not the claim of the "
                    f"event it completes ({complete.fence})"
                )
            fence = complete.fence
        stored_outcome = (
            RunOutcome.REFUSED
            if refusal is not None
            else RunOutcome.RUNNING
            if admitted is not None
            else outcome
        )
        created = audit_data(
            {
                "rule": rule,
                "starts_at": event.starts_at,
                "event_id": event.id,
                "target": target.as_dict(),
                "outcome": str(outcome),
                "dry_run": dry_run,
                "occurrence": occurrence,
                "refire": event.refire,
                **({"decision": dict(decision)} if decision else {}),
                # The alert as it fired: the event is pruned by retention, the audit row
                # stays, so the review still shows what fired (receiver/review/).
                "alert": {
                    "labels": dict(event.labels),
                    "annotations": dict(event.annotations),
                    "generator_url": event.generator_url,
                    "group_key": event.group_key,
                },
                **(dict(data) if data else {}),
                # A refused run's steps never change: its plan is this row's data, not a `step`
                # row each (issue 12: with the shipped rule's three steps, a storm's refused
                # event appends three audit rows instead of five).
                **(
                    {
                        "steps": [
                            step_audit(
                                "run",
                                step.index,
                                step.action,
                                "not_run",
                                refusal.not_run,
                                step.params,
                            )
                            for step in steps
                        ]
                    }
                    if refusal is not None
                    else {}
                ),
                # And its refusal and announcement: one audit row, not three (audit_folds.py).
                **(
                    {REFUSED_KEY: refusal.audit()}
                    | ({ANNOUNCED_KEY: dict(announced)} if announced is not None else {})
                    if refusal is not None
                    else {}
                ),
            }
        )
        # The steps as write_step records a new one, and the audit row it appends for each
        # (none for a refused run: its run.created row lists them).
        step_rows = [
            (
                step.index,
                step.action,
                canonical_json(dict(step.params)),
                step.needs_approval,
                step.description,
                None
                if refusal is not None
                else audit_data(
                    step_audit(
                        "run", step.index, step.action, step_outcome, step.description, step.params
                    )
                ),
            )
            for step in steps
        ]
        columns = list(zip(*step_rows, strict=True)) if step_rows else [()] * 6
        if complete is not None:
            complete.finishing = True
        args = (
            rule,
            event.fingerprint,
            event.starts_at,
            event.alertname,
            event.id,
            target.kind,
            target.namespace,
            target.name,
            str(stored_outcome),
            dry_run,
            occurrence,
            verify_within_s,
            event.refire,
            settle_s,
            None if decision is None else canonical_json(dict(decision)),
            event.group_key,
            step_outcome,
            *[list(column) for column in columns],
            created,
            run_id,
            # The refusal's and the announcement's audit data are the run.created row's then.
            *(
                (refusal.guard, refusal.reason, refusal.retry_at, refusal.not_run, None)
                if refusal is not None
                else (None, None, None, None, None)
            ),
            None if announced is None or refusal is not None else audit_data(announced),
            None if complete is None else complete.event_id,
            None if complete is None else complete.owner,
            None if admitted is None else audit_data(admitted),
            _RUNNING_AUDIT,
            None if on_resolved is None else undo_as_json(on_resolved),
            # The completion fences the statement when it completes the event; the lease
            # is then not checked twice.
            *fence_args(None if complete is not None else lease),
            None if complete is None else complete.attempts,
        )
        # One statement (run_creation.py), group-committed with the other runs the worker
        # writes meanwhile (group.py): one round trip and one commit for them all.
        try:
            with translate():
                row = await self._grouped.fetchrow(CREATE_RUN_SQL, *args)
        except asyncpg.UniqueViolationError as exc:
            # Another statement stored this run after this one looked (only unfenced writes
            # can race: a claim's are ordered by its event's row lock). It has committed, so
            # sent again, this one finds it and leaves it be, as it does any stored run.
            if exc.constraint_name != "runs_once_per_occurrence":
                raise
            with translate():
                row = await self._grouped.fetchrow(CREATE_RUN_SQL, *args)
        assert row is not None  # the outer SELECT has no FROM: always one row
        check_held(row["ok"], fence, f"the run of rule {rule} for event {event.id}")
        if complete is not None and row["completed"]:
            complete.completed = True
        run: str | None = row["id"]
        return run

    async def get_run(self, run_id: str, *, with_steps: bool = True) -> RunRecord | None:
        """One run, its 'run' steps, then 'on_failed', then 'resolve'; None if absent or not a
        uuid."""
        # One round trip: the run's columns on every row, one row per step (one row with no
        # step columns when it has none, or when they are not wanted).
        with translate():
            try:
                rows = await self._pool.fetch(
                    f"""SELECT {RUN_COLUMNS}, s.*
                        FROM runs LEFT JOIN LATERAL (
                            SELECT run_id AS s_run_id, phase AS s_phase, idx AS s_idx,
                                   action AS s_action, params::text AS s_params,
                                   needs_approval AS s_needs_approval, outcome AS s_outcome,
                                   message AS s_message, before::text AS s_before,
                                   after::text AS s_after, attempts AS s_attempts,
                                   started_at AS s_started_at, finished_at AS s_finished_at,
                                   may_have_acted AS s_may_have_acted,
                                   CASE phase WHEN 'run' THEN 0 WHEN 'on_failed' THEN 1
                                              ELSE 2 END AS s_order
                            FROM steps WHERE steps.run_id = runs.id AND $2
                        ) s ON true
                        WHERE runs.id = $1::uuid
                        ORDER BY s.s_order, s.s_idx""",
                    run_id,
                    with_steps,
                )
            except asyncpg.exceptions.DataError:
                return None  # not a uuid: no such run
        if not rows:
            return None
        steps = [
            step_from_row({k[2:]: v for k, v in r.items() if k.startswith("s_")})
            for r in rows
            if r["s_run_id"] is not None
        ]
        return run_from_row(rows[0], steps)

    async def set_run_outcome(
        self,
        run_id: str,
        outcome: RunOutcome,
        *,
        error: str | None = None,
        verify_within_s: float | None = None,
        data: Mapping[str, Any] | None = None,
        schedule: Sequence[tuple[str, float]] = (),
        announced: Mapping[str, Any] | None = None,
        lease: LeaseFence | None = None,
        expect: RunOutcome | None = None,
        finish: bool = False,
    ) -> bool:
        """Move a run to ``outcome``; keeps the timestamps that follow from it.

        RUNNING stamps started_at (once); a terminal outcome stamps finished_at; VERIFYING sets
        verify_deadline = remediator_now() + (verify_within_s or the run's own verify_within_s).
        A run its resolution reached while it ran (``close_run``) gets its ``verify_deadline``
        job due now as it moves to VERIFYING: nothing is left to wait for.
        ``schedule`` lists jobs (kind, delay in seconds) enqueued in the same transaction as
        the outcome, as ``enqueue_job`` would. Returns False when the run does not exist;
        ValueError (before any change) for an unknown job kind. ``announced``: a
        ``run.announced`` row that had nothing to send, audited after the outcome in the same
        transaction (as ``create_run`` does). ``lease``: the claim the move is made under;
        LeaseLost, nothing written, once its owner lost it (fence.py). ``expect``: only from
        that outcome, in the statement (False, nothing written, when it moved on).
        ``finish``: an end that leaves work beyond the store (the unused budget slot, the lock
        the run's last admission took): its ``finish_end`` job queued with it (finish.py)."""
        terminal = outcome in _TERMINAL
        jobs = [(JobKind(kind), delay_s) for kind, delay_s in schedule]
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""
                WITH held AS ({held_sql("$6", "$7", "$8", "$9")}), moved AS (
                UPDATE runs SET
                    outcome = $2,
                    started_at = CASE WHEN $2 = 'running'
                                      THEN coalesce(started_at, remediator_now())
                                      ELSE started_at END,
                    finished_at = CASE WHEN $3 THEN coalesce(finished_at, remediator_now())
                                       ELSE finished_at END,
                    verify_deadline = CASE
                        WHEN $2 = 'verifying' AND coalesce($5, verify_within_s) IS NOT NULL
                        THEN remediator_now() + make_interval(secs => coalesce($5, verify_within_s))
                        ELSE verify_deadline END,
                    error = coalesce($4, error)
                WHERE id = $1::uuid AND (SELECT ok FROM held) AND outcome = coalesce($10, outcome)
                RETURNING fingerprint, verify_deadline, resolved_at
                )
                SELECT held.ok, moved.* FROM held LEFT JOIN moved ON true
                """,
                run_id,
                str(outcome),
                terminal,
                error,
                verify_within_s,
                *fence_args(lease),
                None if expect is None else expect.value,
            )
            check_held(row["ok"], lease, f"the outcome {outcome} of run {run_id}")
            if row["fingerprint"] is None:
                return False
            if terminal:
                await mark_not_run(conn, run_id, f"not run: the run ended {outcome}")
            payload: dict[str, Any] = {"outcome": str(outcome)}
            if error is not None:
                payload["error"] = error
            if row["verify_deadline"] is not None and outcome is RunOutcome.VERIFYING:
                payload["verify_deadline"] = as_utc(row["verify_deadline"]).isoformat()
            if data:
                payload.update(data)
            if outcome is RunOutcome.VERIFYING and row["resolved_at"] is not None:
                # Resolved while its steps ran: the verdict is due now, not at the deadline.
                jobs.append((JobKind.VERIFY_DEADLINE, 0.0))
            # Before the audit row: that takes the one audit_head lock, held until COMMIT.
            for kind, delay_s in jobs:
                await enqueue(conn, kind, run_id, delay_s=delay_s)
            if finish:
                await queue_finish(conn, run_id, release=await admitted_release(conn, run_id))
            await append_in_tx(conn, "run.outcome", run_id, row["fingerprint"], payload)
            if announced is not None:
                await append_in_tx(conn, ANNOUNCED, run_id, row["fingerprint"], announced)
        return True

    async def list_runs(self, **filters: Unpack[RunFilters]) -> tuple[list[RunRecord], str | None]:
        """Runs, newest first, keyset-paginated on (created_at, id) (``RunFilters``).

        The second item is the next page's cursor, None on the last page. ValueError for a
        malformed target key, outcome or cursor.
        """
        rows, next_cursor = await fetch_run_page(self._pool, filters)
        return [run_from_row(r) for r in rows], next_cursor
