"""The lease discipline both queues share: alert events (events.py) and jobs (jobs.py).

An item is due when it is pending and its ``not_before`` came, or claimed with its lease run
out (its worker died). A claim leases it to one owner until ``lease_until``; only that owner may
extend the lease, settle the item or release it back to pending, and each of those statements
changes nothing once the owner lost the lease (another worker claimed the item since). The
writes the work makes between the claim and the settlement are held to the same rule by
fence.py (``EventLease.fence``, ``ClaimedJob.fence``). Finished
items are deleted after the retention period; dead ones wait for an operator (queues.py).

``QueueTable`` says what differs between the two tables; ``Leases`` runs the statements that do
not, and the claim statements build their SET and due predicate from ``claim_assignments`` and
``due_sql``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.fence import LeaseFence, claimed_sql

__all__ = [
    "EVENTS",
    "JOBS",
    "EventLease",
    "EventLeases",
    "Leases",
    "QueueTable",
    "claim_assignments",
    "complete_sql",
    "due_sql",
    "held_where",
    "lease_expired_sql",
]


def held_where(attempts: str) -> str:
    """The WHERE of every statement only the claim may make (its settlements): $1 the item's
    id, $2 the owner, ``attempts`` (a parameter) the claim's own count of claims, without
    which an owner's earlier claim of the item, late, would settle its later one (fence.py)."""
    return claimed_sql("$1", "$2", attempts)


@dataclass(slots=True)
class EventLease:
    """A claimed alert event's lease, handed to the pipeline so that its last write can
    complete the event in the same statement (one transaction per event, not two).

    The store sets ``finishing`` as that write is sent, and ``completed`` when it marked the
    event done; the worker then does not complete it again. Left False (the write did not
    happen, or ``owner`` lost the lease meanwhile), the worker settles the claim as it would
    have without it.

    ``attempts`` is the event's count of claims as this claim left it (``ClaimedEvent``):
    with ``owner``, what names this claim and no other, the same worker's earlier ones
    included (fence.py)."""

    event_id: int
    owner: str
    attempts: int
    completed: bool = False
    # Set just before the write that completes the event is sent: from then on a lease that
    # cannot be extended may be this write's own doing, and the work ends with it.
    finishing: bool = False

    @property
    def fence(self) -> LeaseFence:
        """The claim the event's writes are fenced by (receiver.store.fence)."""
        return LeaseFence("event", self.event_id, self.owner, self.attempts)


def complete_sql(event_id: str, owner: str, attempts: str) -> str:
    """The UPDATE that marks a claimed alert event done while ``owner`` holds its lease under
    the claim that left its count of claims at ``attempts`` (``event_id``, ``owner`` and
    ``attempts`` are SQL expressions, usually parameters), returning its id:
    ``EventQueue.complete_event`` runs it alone, ``Runs.create_run`` as a CTE of the
    statement that stores a refused run, which it fences. ``attempts`` names the claim
    (``EventLease.attempts``), so that a late copy of an earlier claim's statement completes
    nothing under the same owner's next claim (fence.py)."""
    return f"""UPDATE alert_events
        SET state = 'done', done_at = remediator_now(), lease_owner = NULL, lease_until = NULL
        WHERE {claimed_sql(event_id, owner, attempts)}
        RETURNING id"""


def lease_expired_sql(alias: str) -> str:
    """The SQL text of ``last_error`` for an item whose lease ran out, from the row before the
    claim that takes it up again (``alias`` names that row)."""
    return (
        f"'lease expired: ' || coalesce({alias}.lease_owner, 'its worker')"
        " || ' stopped holding it before it was settled'"
    )


def due_sql(alias: str) -> str:
    """The SQL predicate "the row ``alias`` may be claimed now": pending and due, or claimed
    with its lease run out."""
    return (
        f"(({alias}.state = 'pending' AND {alias}.not_before <= remediator_now())"
        f" OR ({alias}.state = 'claimed' AND {alias}.lease_until < remediator_now()))"
    )


def claim_assignments(alias: str, lease_s: str) -> str:
    """The SET of a claim of the row ``alias`` (read as it was before the update) for owner
    ``$1`` and ``lease_s`` (a parameter, seconds): one more attempt, and when the row was still
    claimed (its lease ran out), one more failure, ``last_error`` saying so."""
    return f"""state = 'claimed', lease_owner = $1, attempts = {alias}.attempts + 1,
        lease_until = remediator_now() + make_interval(secs => {lease_s}),
        failures = {alias}.failures + ({alias}.state = 'claimed')::int,
        last_error = CASE WHEN {alias}.state = 'claimed' THEN {lease_expired_sql(alias)}
                          ELSE {alias}.last_error END"""


@dataclass(frozen=True, slots=True)
class QueueTable:
    """What differs between the two queues' tables, for the statements both share.

    ``kind`` prefixes the audit kinds (``event.dead``, ``job.retry``); ``release_due`` is the
    SQL of the next due time given ``$3`` seconds; ``subject`` lists the columns that say what
    the item is about, and ``audit`` turns a row of them into (run_id, fingerprint, data);
    ``release_reset`` is SQL assignments (ending with a comma) a release also makes; ``keep``
    an SQL condition on a row (named as its table) that retention spares it for.
    """

    kind: str
    table: str
    release_due: str
    subject: str
    audit: Callable[[Mapping[str, Any]], tuple[str | None, str | None, dict[str, Any]]]
    release_reset: str = ""
    keep: str = ""


def _event_audit(row: Mapping[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    data = {
        "event_id": row["id"],
        "alertname": row["alertname"],
        "status": row["status"],
        "starts_at": row["starts_at"],
    }
    return None, row["fingerprint"], data


def _job_audit(row: Mapping[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    return row["run_id"], None, {"job_id": row["id"], "job": row["kind"]}


EVENTS = QueueTable(
    kind="event",
    table="alert_events",
    release_due="remediator_now() + make_interval(secs => $3)",
    subject="id, fingerprint, alertname, status, starts_at",
    audit=_event_audit,
    # The event that created a run with a job still open (parked for its approval, waiting
    # for the target lock, verifying, an undo or an escalation to come, a dead job to retry):
    # taken up again, the run reads its alert back (pipeline.runner.take_up), which its steps
    # write about and an approval's plan binds. Open jobs are few (jobs_open_by_run). Not a
    # finish_end job's: it gives back a slot or a lock and sends a notice, never reading the
    # alert (an approval's notice job kept it 30 s past the run's end).
    keep="""EXISTS (SELECT 1 FROM jobs j JOIN runs r ON r.id = j.run_id
                    WHERE j.state <> 'done' AND j.kind <> 'finish_end'
                      AND r.event_id = alert_events.id)""",
)
JOBS = QueueTable(
    kind="job",
    table="jobs",
    # A rerun asked for while the job was claimed may bring its next attempt forward.
    release_due="least(remediator_now() + make_interval(secs => $3), rerun_at)",
    subject="id, kind, run_id::text AS run_id",
    audit=_job_audit,
    release_reset="rerun_at = NULL,",
)


class Leases(Database):
    """The lease statements both queues make; ``EventQueue`` and ``JobQueue`` name them."""

    async def _extend(
        self, queue: QueueTable, item_id: int, owner: str, attempts: int, lease_s: float
    ) -> bool:
        """Push the lease forward ``lease_s`` seconds; False when ``owner`` no longer holds it
        under its claim ``attempts`` (the item's count of claims as the claim left it)."""
        with translate():
            row = await self._pool.fetchrow(
                f"""UPDATE {queue.table}
                    SET lease_until = remediator_now() + make_interval(secs => $3)
                    WHERE {held_where("$4")} RETURNING id""",
                item_id,
                owner,
                float(lease_s),
                attempts,
            )
        return row is not None

    async def _release(
        self,
        queue: QueueTable,
        item_id: int,
        owner: str,
        attempts: int,
        delay_s: float,
        error: str | None,
    ) -> bool:
        """Back to pending, due as ``queue.release_due`` says after ``delay_s`` seconds, with
        ``error`` (if any) as ``last_error``; False when ``owner`` no longer holds the lease
        under its claim ``attempts``."""
        with translate():
            row = await self._pool.fetchrow(
                f"""UPDATE {queue.table}
                    SET state = 'pending', lease_owner = NULL, lease_until = NULL,
                        not_before = {queue.release_due}, {queue.release_reset}
                        last_error = coalesce($4, last_error)
                    WHERE {held_where("$5")} RETURNING id""",
                item_id,
                owner,
                max(0.0, float(delay_s)),
                error,
                attempts,
            )
        return row is not None

    async def _hand_back(self, queue: QueueTable, item_id: int, owner: str, attempts: int) -> bool:
        """Back to pending, due now, the attempt its claim counted taken back: the worker
        stopped before the item's work began. A failure the claim counted (the lease of a
        worker that died with it) stays. False when ``owner`` no longer holds the lease under
        its claim ``attempts``.

        The only statement that lowers ``attempts``, so the next claim has this one's number
        again: safe for the fence (fence.py) because the hand-back is the claim's one and only
        statement (sent before its work or its lease keeper began, and not sent again), so no
        statement of it can come after it."""
        with translate():
            row = await self._pool.fetchrow(
                f"""UPDATE {queue.table}
                    SET state = 'pending', lease_owner = NULL, lease_until = NULL,
                        not_before = remediator_now(), {queue.release_reset}
                        attempts = greatest(attempts - 1, 0)
                    WHERE {held_where("$3")} RETURNING id""",
                item_id,
                owner,
                attempts,
            )
        return row is not None

    async def _depth(self, queue: QueueTable) -> int:
        """Items still queued (pending or claimed). Two counts, each through the partial index
        of its state: no index holds both (migration 0028), and one count of both states read
        the whole table."""
        with translate():
            value: int = await self._pool.fetchval(
                f"SELECT (SELECT count(*) FROM {queue.table} WHERE state = 'pending')"
                f" + (SELECT count(*) FROM {queue.table} WHERE state = 'claimed')"
            )
        return value

    async def _next_due(self, queue: QueueTable) -> datetime | None:
        """When the earliest pending item is due (the store's clock); None when none is."""
        with translate():
            value: datetime | None = await self._pool.fetchval(
                f"SELECT min(not_before) FROM {queue.table} WHERE state = 'pending'"
            )
        return value

    async def _prune(self, queue: QueueTable, older_than_s: float) -> int:
        """Delete the items done more than ``older_than_s`` seconds ago, but those
        ``queue.keep`` holds for; how many."""
        with translate():
            status: str = await self._pool.execute(
                f"""DELETE FROM {queue.table}
                    WHERE state = 'done'
                      AND done_at < remediator_now() - make_interval(secs => $1)
                      {f"AND NOT ({queue.keep})" if queue.keep else ""}""",
                float(older_than_s),
            )
        return int(status.split()[-1])


class EventLeases(Leases):
    """The settlements of an alert event's claim (``EventQueue``). Each names the claim by its
    owner and ``attempts``, the event's count of claims as the claim left it
    (``ClaimedEvent.attempts``), so the same owner's earlier claim, late, settles nothing
    (fence.py); each answers False when the claim is no longer held (the lease was lost)."""

    async def extend_lease(self, event_id: int, owner: str, attempts: int, lease_s: float) -> bool:
        """Push the claim's lease forward ``lease_s`` seconds."""
        return await self._extend(EVENTS, event_id, owner, attempts, lease_s)

    async def complete_event(self, event_id: int, owner: str, attempts: int) -> bool:
        """Mark the claimed event done."""
        with translate():
            row = await self._pool.fetchrow(
                complete_sql("$1", "$2", "$3"), event_id, owner, attempts
            )
        return row is not None

    async def release_event(
        self,
        event_id: int,
        owner: str,
        attempts: int,
        delay_s: float = 0.0,
        error: str | None = None,
    ) -> bool:
        """Back to pending, due after ``delay_s``, ``error`` (if any) its last error."""
        return await self._release(EVENTS, event_id, owner, attempts, delay_s, error)

    async def hand_back_event(self, event_id: int, owner: str, attempts: int) -> bool:
        """Back to pending, due now, its claim's attempt not counted: claimed, but the worker
        began stopping before its work began."""
        return await self._hand_back(EVENTS, event_id, owner, attempts)
