"""How a queued item fails: a bounded number of failed attempts, then the dead-letter state.

Both queues (alert events and jobs) count failed attempts in ``failures``, apart from
``attempts`` (every claim, deferrals included): an attempt fails when processing raised, or when
the worker holding it died (its lease ran out; the claim that takes it up again counts that).
An item whose failures reach the bound leaves the queue as ``dead``, with its last error, and
stays until an operator retries or drops it (queues.py). Its death is audited in the same
transaction. Waiting is not failing: a retry the pipeline asks for (guards unreachable, a
guard's ``retry_at``) or a store outage releases the item with ``release_event``/``release_job``
and counts nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from receiver.store.audit import append_in_tx
from receiver.store.database import Database

__all__ = ["EVENTS", "JOBS", "Failures", "QueueTable", "lease_expired_sql"]


def lease_expired_sql(alias: str) -> str:
    """The SQL text of ``last_error`` for an item whose lease ran out, from the row before the
    claim that takes it up again (``alias`` names that row)."""
    return (
        f"'lease expired: ' || coalesce({alias}.lease_owner, 'its worker')"
        " || ' stopped holding it before it was settled'"
    )


@dataclass(frozen=True, slots=True)
class QueueTable:
    """What differs between the two queues' tables, for the statements both share.

    ``kind`` prefixes the audit kinds (``event.dead``, ``job.retry``); ``release_due`` is the
    SQL of the next due time given ``$3`` seconds; ``subject`` lists the columns that say what
    the item is about, and ``audit`` turns a row of them into (run_id, fingerprint, data);
    ``release_reset`` is SQL assignments (ending with a comma) a release also makes.
    """

    kind: str
    table: str
    release_due: str
    subject: str
    audit: Callable[[Mapping[str, Any]], tuple[str | None, str | None, dict[str, Any]]]
    release_reset: str = ""


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


class Failures(Database):
    """Settle a claim whose attempt failed: back to pending, or dead at the bound."""

    async def fail_event(
        self,
        event_id: int,
        owner: str,
        error: str | None,
        *,
        delay_s: float,
        max_failures: int,
        count: bool = True,
    ) -> str | None:
        """Record a failed attempt of a claimed event; see ``fail``."""
        return await self.fail(EVENTS, event_id, owner, error, delay_s, max_failures, count)

    async def fail_job(
        self,
        job_id: int,
        owner: str,
        error: str | None,
        *,
        delay_s: float,
        max_failures: int,
        count: bool = True,
    ) -> str | None:
        """Record a failed attempt of a claimed job; see ``fail``."""
        return await self.fail(JOBS, job_id, owner, error, delay_s, max_failures, count)

    async def fail(
        self,
        queue: QueueTable,
        item_id: int,
        owner: str,
        error: str | None,
        delay_s: float,
        max_failures: int,
        count: bool,
    ) -> str | None:
        """One more failure (none with ``count`` False: the claim found one already counted),
        then ``'dead'`` when ``failures`` reaches ``max_failures`` (audited as ``KIND.dead``),
        else ``'pending'`` again, due in ``delay_s`` seconds. ``error`` becomes ``last_error``.
        None when ``owner`` no longer holds the lease (nothing changed)."""
        added = 1 if count else 0
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"""
                UPDATE {queue.table} SET
                    -- Every expression here reads the row as it was before this update.
                    failures = failures + $5::int,
                    state = CASE WHEN failures + $5::int >= $6 THEN 'dead' ELSE 'pending' END,
                    dead_at = CASE WHEN failures + $5::int >= $6 THEN remediator_now() END,
                    not_before = {queue.release_due}, {queue.release_reset}
                    last_error = coalesce($4, last_error),
                    lease_owner = NULL, lease_until = NULL
                WHERE id = $1 AND state = 'claimed' AND lease_owner = $2
                RETURNING state, failures, attempts, last_error, {queue.subject}
                """,
                item_id,
                owner,
                max(0.0, float(delay_s)),
                error,
                added,
                max(1, max_failures),
            )
            if row is None:
                return None
            if row["state"] == "dead":
                run_id, fingerprint, data = queue.audit(row)
                data.update(
                    attempts=row["attempts"],
                    failures=row["failures"],
                    last_error=row["last_error"],
                )
                await append_in_tx(conn, f"{queue.kind}.dead", run_id, fingerprint, data)
        state: str = row["state"]
        return state
