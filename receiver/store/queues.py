"""What operators see of the two queues, and what they may do with a dead letter.

Listing and reading alert events and jobs in any state (``pending``, ``claimed``, ``done``,
``dead``), newest first with a keyset cursor; counting the dead ones for ``/metrics``; and the
two answers to a dead letter, each audited in the same transaction (``event.retry``,
``event.drop``, ``job.retry``, ``job.drop``, with who asked, why, and the item's failures):

- retry: a dead item goes back to pending, due now, with its failures counted afresh (its
  last error is kept until the next attempt replaces it); its attempts (every claim it had)
  go on from where they were, as they name its claims to the lease fence (fence.py);
- drop: a dead or pending item is settled as done without being processed, the reason in
  ``settled_reason`` (``dropped: ...``). A claimed item is being processed: it cannot be dropped.
  What only a dropped job would have moved (its run, its steps held or not begun, their
  approvals) ends in the same transaction (job_ends.py), and so is queued what follows that
  end outside the store: a ``finish_end`` job on the run, due at once (``FINISH_REFUND``:
  the budget slot the run never used given back; ``FINISH_NOTICE`` + an approval's id: its
  approvers told it is cancelled; finish.py), done by a worker once the drop committed
  (pipeline/finish_end.py). A crash or an outage after the commit loses neither, and the
  drop's answer waits for neither. A ``finish_end`` job dropped itself says, in the answer's
  ``not_done`` and its ``job.drop`` row, what it leaves undone unless it did it already
  (``finish.left_undone``): before, a slot left spent and a lock left held were silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import asyncpg

from receiver.store.audit import append_in_tx
from receiver.store.database import WORK_CHANNEL, Database
from receiver.store.errors import translate
from receiver.store.finish import admitted_token, left_undone, queue_finish, release_entry
from receiver.store.job_ends import JobEnd, end_dropped_job_run
from receiver.store.leases import EVENTS, JOBS, QueueTable
from receiver.store.paging import Placeholders
from receiver.store.records import JobKind, as_utc
from receiver.store.stored_json import decode_object, stored_data

__all__ = [
    "QUEUE_STATES",
    "ItemConflict",
    "ItemNotFound",
    "Queues",
]

QUEUE_STATES = ("pending", "claimed", "done", "dead")

_EVENT_VIEW = """
    id, fingerprint, alertname, status, starts_at, ends_at, labels::text AS labels,
    annotations::text AS annotations, generator_url, group_key, receiver, received_at, state,
    attempts, failures, last_error, not_before, lease_owner, lease_until, done_at, dead_at,
    settled_reason, skips::text AS skips
"""
_JOB_VIEW = """
    id, kind, run_id::text AS run_id, payload::text AS payload, state, attempts, failures,
    last_error, not_before, lease_owner, lease_until, rerun_at, created_at, done_at, dead_at,
    settled_reason
"""
_VIEWS = {
    "event": (_EVENT_VIEW, ("labels", "annotations", "skips")),
    "job": (_JOB_VIEW, ("payload",)),
}


class ItemNotFound(LookupError):
    """No event or job has this id."""


class ItemConflict(Exception):
    """The item is in a state the action does not apply to; the message says which and why."""


def _view(queue: QueueTable, row: Mapping[str, Any]) -> dict[str, Any]:
    """The item with its JSON columns decoded; one that cannot be read back (an edit of the
    table: an integer of more than 4,300 digits, nesting thousands deep) is given as
    ``audit export`` gives such data: the stored JSON as text, and ``<column>_unreadable``
    saying why (``stored_data``), not a 500 that hid the whole page."""
    _, decoded = _VIEWS[queue.kind]
    item = dict(row)
    for name in decoded:
        item[name], unreadable = stored_data(item[name])
        if unreadable is not None:
            item[f"{name}_unreadable"] = unreadable
    return item


class Queues(Database):
    """List, read, count, retry and drop the items of both queues."""

    async def list_events(
        self,
        *,
        state: str | None = None,
        alertname: str | None = None,
        fingerprint: str | None = None,
        skipped: bool | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of alert events, newest first, and the cursor of the next page (None on the
        last). ``skipped``: only events for which rules were skipped (True) or none (False).
        ValueError for an unknown state or a cursor this did not issue."""
        filters: dict[str, Any] = {"alertname": alertname, "fingerprint": fingerprint}
        extra = []
        if skipped is not None:
            extra.append("skips <> '[]'::jsonb" if skipped else "skips = '[]'::jsonb")
        return await self._page(EVENTS, state, filters, extra, limit, cursor)

    async def list_jobs(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        run_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of jobs, newest first; as ``list_events``. ``run_id`` must be a uuid
        (ValueError otherwise)."""
        filters: dict[str, Any] = {"kind": kind, "run_id": run_id}
        return await self._page(JOBS, state, filters, [], limit, cursor)

    async def _page(
        self,
        queue: QueueTable,
        state: str | None,
        filters: Mapping[str, Any],
        extra: list[str],
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        clauses, arg = list(extra), Placeholders()
        if state is not None:
            if state not in QUEUE_STATES:
                raise ValueError(f"unknown state {state!r}; one of {', '.join(QUEUE_STATES)}")
            clauses.append(f"state = {arg(state)}")
        for column, value in filters.items():
            if value is not None:
                cast = "::uuid" if column == "run_id" else ""
                clauses.append(f"{column} = {arg(value)}{cast}")
        if cursor is not None:
            if not (cursor.isascii() and cursor.isdigit()):  # int() refuses "²", isdigit() not
                raise ValueError("invalid cursor")
            clauses.append(f"id < {arg(int(cursor))}")
        size = max(1, min(limit, 1000))
        view, _ = _VIEWS[queue.kind]
        sql = (
            f"SELECT {view} FROM {queue.table} WHERE {' AND '.join(clauses) or 'true'}"
            f" ORDER BY id DESC LIMIT {arg(size + 1)}"
        )
        try:
            with translate():
                rows = await self._pool.fetch(sql, *arg.args)
        except asyncpg.exceptions.DataError as exc:  # a run_id that is not a uuid
            raise ValueError(str(exc)) from None
        page = [_view(queue, r) for r in rows[:size]]
        next_cursor = str(page[-1]["id"]) if len(rows) > size else None
        return page, next_cursor

    async def event_view(self, event_id: int) -> dict[str, Any] | None:
        """One alert event with its queue state and skipped rules; None if there is none."""
        return await self._one(EVENTS, event_id)

    async def job_view(self, job_id: int) -> dict[str, Any] | None:
        """One job with its queue state; None if there is none."""
        return await self._one(JOBS, job_id)

    async def _one(self, queue: QueueTable, item_id: int) -> dict[str, Any] | None:
        view, _ = _VIEWS[queue.kind]
        with translate():
            row = await self._pool.fetchrow(
                f"SELECT {view} FROM {queue.table} WHERE id = $1", item_id
            )
        return None if row is None else _view(queue, row)

    async def dead_counts(self) -> dict[str, int]:
        """Dead letters per queue: ``{"events": n, "jobs": m}``."""
        with translate():
            row = await self._pool.fetchrow(
                """SELECT (SELECT count(*) FROM alert_events WHERE state = 'dead') AS events,
                          (SELECT count(*) FROM jobs WHERE state = 'dead') AS jobs"""
            )
        return {"events": row["events"], "jobs": row["jobs"]}

    async def retry_item(
        self, kind: str, item_id: int, *, actor: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Put a dead event or job (``kind``) back in its queue, due now; audited. Returns the
        item as it is now. ItemNotFound; ItemConflict when it is not dead, or (a job) when an
        open job of the same kind already exists for its run."""
        queue = _queue(kind)
        view, _ = _VIEWS[queue.kind]
        try:
            async with self._tx() as conn:
                before = await self._lock(conn, queue, item_id)
                if before["state"] != "dead":
                    raise ItemConflict(
                        f"{kind} {item_id} is {before['state']}, not dead: only a dead "
                        f"{kind} can be retried"
                    )
                row = await conn.fetchrow(
                    f"""UPDATE {queue.table}
                        SET state = 'pending', not_before = remediator_now(),
                            -- Failures afresh, attempts not: lowered, a claim after the
                            -- retry would have the number of a claim before the item's
                            -- death, whose late statement would settle it (fence.py).
                            failures = 0, dead_at = NULL
                        WHERE id = $1 RETURNING {view}""",
                    item_id,
                )
                await conn.execute("SELECT pg_notify($1, '')", WORK_CHANNEL)
                await self._audit(conn, queue, "retry", before, actor, reason)
        except asyncpg.exceptions.UniqueViolationError:
            # jobs_open_once: the same work was asked for again since this job died.
            raise ItemConflict(
                f"{kind} {item_id}: an open job of the same kind is already queued for its "
                "run; drop this one instead"
            ) from None
        return _view(queue, row)

    async def drop_item(
        self, kind: str, item_id: int, *, actor: str, reason: str
    ) -> dict[str, Any]:
        """Settle a dead or pending event or job as done without processing it, ``reason`` in
        its ``settled_reason``; audited. What only a job would have moved ends with it
        (job_ends.py), and the item then says so: ``run_ended`` (the run's new outcome),
        ``steps_ended`` (indexes), ``steps_interrupted`` (those of them a worker had stopped
        in: they may have acted), ``approvals_cancelled`` (ids), and ``target_lock``
        (``rule``, ``target``: kind, namespace, name) when the ended run may still hold its target
        lock, for the caller to release by the token of the run's admission now that the drop has
        committed (the ``finish_end`` job names the same lock); ``not_done``, what the dropped job
        would have done that nothing now does (an escalation's breaker feed and announcement);
        ``finish_job``, the id of the ``finish_end`` job queued with the drop (module docstring);
        for a dropped ``finish_end`` job, ``not_done`` says what it may leave undone
        (``left_undone``). ItemNotFound; ItemConflict when it is claimed (being processed) or
        already done."""
        item, _ = await self._drop(kind, item_id, actor, reason)
        return item

    async def drop_job(
        self, job_id: int, *, actor: str, reason: str
    ) -> tuple[dict[str, Any], JobEnd | None]:
        """``drop_item`` of job ``job_id``, with what it ended (None: nothing), for the caller
        to do what follows a run's end in its own process once the drop committed (count it
        and its cancelled approvals, release its target lock: http/queues.py); the rest is
        the ``finish_end`` job's. Same errors."""
        return await self._drop("job", job_id, actor, reason)

    async def _drop(
        self, kind: str, item_id: int, actor: str, reason: str
    ) -> tuple[dict[str, Any], JobEnd | None]:
        queue = _queue(kind)
        view, _ = _VIEWS[queue.kind]
        async with self._tx() as conn:
            if queue is JOBS:
                # The run's row first, then the job's: the order of every writer of both
                # (``close_run`` locks the run, then queues its job). Locking the job first
                # deadlocked with a run settling whose deadline job this was.
                await conn.execute(
                    """SELECT 1 FROM runs
                       WHERE id = (SELECT run_id FROM jobs WHERE id = $1) FOR UPDATE""",
                    item_id,
                )
            before = await self._lock(conn, queue, item_id)
            if before["state"] == "claimed":
                raise ItemConflict(_claimed(kind, item_id, before))
            if before["state"] not in ("dead", "pending"):
                raise ItemConflict(
                    f"{kind} {item_id} is {before['state']} (already settled): not dropped"
                )
            row = await conn.fetchrow(
                f"""UPDATE {queue.table}
                    SET state = 'done', done_at = remediator_now(), settled_reason = $2
                    WHERE id = $1 RETURNING {view}""",
                item_id,
                f"dropped: {reason}",
            )
            # A finish_end job dropped leaves what it had not done yet undone: said, not lost.
            undone = None
            if queue is JOBS and before["kind"] == JobKind.FINISH_END:
                payload, _ = decode_object("payload", row["payload"])
                undone = left_undone(payload or {})
            await self._audit(conn, queue, "drop", before, actor, reason, not_done=undone)
            # After the job's own row: what only this job would have moved ends with it.
            ended = (
                None
                if queue is not JOBS
                else await end_dropped_job_run(conn, before, actor, reason)
            )
            finish = None
            if ended is not None:
                # In the drop's transaction: what follows the end is queued with it, or
                # neither is written.
                # Due now: the drop leaves all of it to the job (finish.py), the target lock
                # included (the HTTP drop releases it at once too: a crash, or Redis failing
                # after the commit, left it held until its TTL).
                run_id = str(before["run_id"])
                release = None
                if ended.lock is not None:
                    # Read once: the caller releases by the same token (``JobEnd.lock_token``).
                    ended = replace(ended, lock_token=await admitted_token(conn, run_id))
                    release = release_entry(ended.lock_token)
                finish = await queue_finish(
                    conn,
                    run_id,
                    notices=[a.id for a in ended.approvals],
                    release=release,
                    delay_s=0.0,
                )
        item = _view(queue, row)
        if undone is not None:
            item["not_done"] = undone
        if ended is not None:
            item.update(_ended(ended))
            item["finish_job"] = finish
        return item, ended

    async def _lock(self, conn: Any, queue: QueueTable, item_id: int) -> Mapping[str, Any]:
        # FOR UPDATE: a claim skips the row (SKIP LOCKED) while the action decides.
        row = await conn.fetchrow(
            f"""SELECT state, attempts, failures, last_error, {queue.subject}, lease_until,
                       lease_until < remediator_now() AS lease_ran_out
                FROM {queue.table} WHERE id = $1 FOR UPDATE""",
            item_id,
        )
        if row is None:
            raise ItemNotFound(f"no {queue.kind} {item_id}")
        result: Mapping[str, Any] = row
        return result

    async def _audit(
        self,
        conn: Any,
        queue: QueueTable,
        action: str,
        before: Mapping[str, Any],
        actor: str,
        reason: str | None,
        not_done: str | None = None,
    ) -> None:
        run_id, fingerprint, data = queue.audit(before)
        data.update(
            by=actor,
            reason=reason,
            was=before["state"],
            attempts=before["attempts"],
            failures=before["failures"],
            last_error=before["last_error"],
        )
        if not_done is not None:
            data["not_done"] = not_done
        await append_in_tx(conn, f"{queue.kind}.{action}", run_id, fingerprint, data)


def _ended(ended: JobEnd) -> dict[str, Any]:
    """The keys a drop adds to its item for what it ended (``drop_item``)."""
    said: dict[str, Any] = {}
    if ended.outcome is not None:
        said["run_ended"] = ended.outcome
    if ended.steps:
        said["steps_ended"] = sorted(ended.steps)
    if ended.interrupted:
        said["steps_interrupted"] = sorted(ended.interrupted)
    if ended.approvals:
        said["approvals_cancelled"] = [a.id for a in ended.approvals]
    if ended.not_done is not None:
        said["not_done"] = ended.not_done
    if ended.lock is not None:
        rule, target = ended.lock
        where = {"kind": target.kind, "namespace": target.namespace, "name": target.name}
        said["target_lock"] = {"rule": rule, "target": where}
    return said


def _queue(kind: str) -> QueueTable:
    if kind == EVENTS.kind:
        return EVENTS
    if kind == JOBS.kind:
        return JOBS
    raise ValueError(f"unknown queue {kind!r}; 'event' or 'job'")


def _claimed(kind: str, item_id: int, before: Mapping[str, Any]) -> str:
    """Why a claimed item is not dropped, and what to do: a live worker extends its lease
    until the item is done, or released to be retried, or dead after worker.max_attempts
    failures (then it can be dropped); a dead worker's lease runs out within worker.lease,
    and the next worker to claim takes the item up, counting the failure."""
    until = before["lease_until"]
    lease = "runs out"
    if until is not None:
        when = as_utc(until).isoformat(timespec="seconds")
        lease = f"ran out at {when}" if before["lease_ran_out"] else f"runs out at {when}"
    return (
        f"{kind} {item_id} is claimed (being processed): not dropped. Wait until it is done, "
        "or dead after its failures (worker.max_attempts), then drop it; if its worker died, "
        f"its lease {lease} (worker.lease) and the next worker takes it up"
    )
