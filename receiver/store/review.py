"""What the post-incident review reads: runs with everything recorded about them, the alert
events nothing was done for, and the times that place incidents (receiver/review/).

Every read returns plain rows (dicts of column -> value, jsonb decoded; an audit row's data
that cannot be read, which only an edit of the table writes, is ``{}`` with
``data_unreadable`` saying why; a step's, approval's or event's JSON column that cannot be
read, or is not of the shape this service writes there, is None, and the row's
``unreadable`` maps the column to why); ``receiver.review`` turns them into its records. Outcomes
and states are returned as stored text, never parsed into enums: a run of an outcome this
version does not know is still read.

An incident's members are found by their *incident key*: the alert group's key, or
``alertname=<name>`` for a run or event without one (``review.incidents.incident_key``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Unpack

from receiver.store.announcements import DIGEST_AUDIT
from receiver.store.audit import review_data
from receiver.store.audit_rows import AT_COLUMNS, at_unreadable
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.paging import Placeholders, RunFilters, fetch_run_page
from receiver.store.records import RUN_COLUMNS
from receiver.store.stored_json import OBJECT, OBJECTS, STRINGS, decode_columns
from receiver.timestamps import utc_strftime

__all__ = [
    "REVIEW_RUN_COLUMNS",
    "SERVICE_AUDIT_SQL",
    "SERVICE_LATE",
    "SERVICE_LIMIT",
    "ReviewReads",
    "service_audit_args",
]

REVIEW_RUN_COLUMNS = RUN_COLUMNS + ", group_key"

# The most service rows of one kind a review reads at once (the kinds are counted apart: a
# refusal digest a window for every noisy rule never crowds a pause out).
SERVICE_LIMIT = 1000
# How long after what it is about a service row may be written, and still be read for it: a
# pause or resume recorded late (``recorded_late``: PostgreSQL was away when it took effect;
# receiver/audit_outbox.py) and a refusal digest (written when its window, at most a day long,
# has ended; one no replica could send within a day is dropped).
SERVICE_LATE = timedelta(days=7)

# The service's own audit rows (no run) of the kinds in $3 about [$1, $2]: written in it, or
# later (up to $4) when recorded late ($1 <= occurred_at <= $2 is checked by the caller) or a
# refusal digest ($5) whose window starts by $6 (the window's start as text to the second,
# UTC: ISO 8601 text of one form orders as its times; the caller checks the window exactly).
# At most $7 of each kind, the first by time, each with how many there were of its kind.
# Through the partial index of those rows by time (migration 0021), however many run rows
# the log holds.
SERVICE_AUDIT_SQL = """SELECT id, at, kind, data::text AS data, total FROM (
     SELECT id, at, kind, data,
            row_number() OVER (PARTITION BY kind ORDER BY at, id) AS n,
            count(*) OVER (PARTITION BY kind) AS total
     FROM audit_log
     WHERE at >= $1::timestamptz AND at <= $2::timestamptz + $4::interval AND run_id IS NULL
       AND kind = ANY($3::text[])
       AND (at <= $2 OR data->>'recorded_late' = 'true'
            OR (kind = $5 AND left(data->>'start', 19) <= $6))
   ) found
   WHERE n <= $7 ORDER BY at, id"""


def service_audit_args(
    since: datetime, until: datetime, kinds: Sequence[str], limit: int = SERVICE_LIMIT
) -> list[Any]:
    """The arguments of ``SERVICE_AUDIT_SQL`` for the rows of ``kinds`` about [since, until]."""
    # ISO's four-digit year, as the rows' `start` is written.
    start_by = utc_strftime(until, "%Y-%m-%dT%H:%M:%S")
    return [since, until, list(kinds), SERVICE_LATE, DIGEST_AUDIT, start_by, limit]


# The incident key of a row of runs or alert_events (both have group_key and alertname).
_KEY = "(CASE WHEN group_key = '' THEN 'alertname=' || alertname ELSE group_key END)"
# Rows of one of the keys in $N (a text[]).
_OF_KEYS = "(group_key = ANY({p}) OR (group_key = '' AND 'alertname=' || alertname = ANY({p})))"
# The same for runs, through the (md5(group_key), created_at) index: a group key has no length
# limit, so the index holds its hash. The hashes of the keys, and of '' for the runs keyed by
# alertname, find the rows; _OF_KEYS makes the match exact.
_RUNS_OF_KEYS = (
    "(md5(group_key) = ANY(ARRAY(SELECT md5(k) FROM unnest({p} || ''::text) AS k))"
    " AND " + _OF_KEYS + ")"
)

# Done events received from {lo} on, through the done_at index: an event is done at or after its
# receipt, and one whose processing ended more than a day after it arrived is not looked for.
_DONE_SINCE = (
    "state = 'done' AND done_at >= {lo}::timestamptz"
    " AND done_at < {hi}::timestamptz + interval '1 day'"
)

_EVENT_COLUMNS = """
    id, fingerprint, starts_at, status, labels::text AS labels,
    annotations::text AS annotations, generator_url, alertname, group_key, received_at, refire
"""


def _run_row(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["id"] = str(data["id"])
    return data


def _audit(row: Any) -> dict[str, Any]:
    """An audit row with its ``data`` decoded (``review_data``: an edited row's that cannot be
    read is ``{}``) and ``data_unreadable``, None or why it cannot be read. A run's row read
    with ``AT_COLUMNS`` and ``placed`` whose time cannot be read is unreadable too (data
    ``{}``), at ``placed``: its run's creation."""
    entry = dict(row)
    stored_at, placed = entry.pop("at_stored", None), entry.pop("placed", None)
    if stored_at is not None:
        return {**entry, "at": placed, "data": {}, "data_unreadable": at_unreadable(stored_at)}
    data, unreadable = review_data(row["data"])
    return {**entry, "data": data, "data_unreadable": unreadable}


# The shapes of the JSON columns the review reads, as this service writes them: anything else
# there only an edit of the table wrote. Checked so that a page reading the value as written
# (``plan.get``, ``labels.items()``) never meets another type: a 500 would hide every run of
# the window from the reviewer.
_STEP_SHAPES = {"params": OBJECT, "before": OBJECT, "after": OBJECT}
_APPROVAL_SHAPES = {"plan": OBJECT}
_EVENT_SHAPES = {"labels": STRINGS, "annotations": STRINGS}
_UNACTED_SHAPES = {**_EVENT_SHAPES, "skips": OBJECTS}


def _decode(row: Any, shapes: Mapping[str, str]) -> dict[str, Any]:
    """``row`` with its JSON ``shapes`` columns decoded (``decode_columns``: one that cannot
    be read back or is not of its shape is None), and ``unreadable``: column -> why."""
    data, unreadable = decode_columns(row, shapes)
    data["unreadable"] = unreadable
    return data


class ReviewReads(Database):
    """The review's reads (mixin of ``Store``)."""

    async def review_run_page(
        self, **filters: Unpack[RunFilters]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of runs, newest first, as rows with their ``group_key`` (filters and cursor
        as ``Runs.list_runs``; ValueError for a bad target, outcome or cursor)."""
        rows, next_cursor = await fetch_run_page(self._pool, filters, REVIEW_RUN_COLUMNS)
        return [_run_row(r) for r in rows], next_cursor

    async def review_runs(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        keys: Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
        limit: int = 20000,
    ) -> list[dict[str, Any]]:
        """Runs created in [since, until) (either bound optional), of the incident ``keys``
        and/or with the given ids, oldest first, at most ``limit`` + 1 (so the caller can tell
        there were more). Each row also holds ``steps``, ``approvals`` and ``audit`` (lists,
        oldest first) and ``event`` (its alert event's row, None once retention pruned it)."""
        clauses, arg = ["true"], Placeholders()
        if since is not None:
            clauses.append(f"created_at >= {arg(since)}")
        if until is not None:
            clauses.append(f"created_at < {arg(until)}")
        if keys is not None:
            clauses.append(_RUNS_OF_KEYS.format(p=arg(list(keys)) + "::text[]"))
        if run_ids is not None:
            clauses.append(f"id = ANY({arg(list(run_ids))}::uuid[])")
        sql = (
            f"SELECT {REVIEW_RUN_COLUMNS} FROM runs WHERE {' AND '.join(clauses)}"
            f" ORDER BY created_at, id LIMIT {arg(limit + 1)}"
        )
        async with self._tx(isolation="repeatable_read", readonly=True) as conn:
            # One snapshot: a run and what is recorded about it are read as of the same moment.
            runs = [_run_row(r) for r in await conn.fetch(sql, *arg.args)]
            if runs:
                await self._details(conn, runs)
        return runs

    async def _details(self, conn: Any, runs: list[dict[str, Any]]) -> None:
        ids = [r["id"] for r in runs]
        by_id = {r["id"]: r for r in runs}
        for run in runs:
            run.update(steps=[], approvals=[], audit=[], event=None)
        for row in await conn.fetch(
            """SELECT run_id::text AS run_id, phase, idx, action, params::text AS params,
                      needs_approval, outcome, message, before::text AS before,
                      after::text AS after, started_at, finished_at, may_have_acted
               FROM steps WHERE run_id = ANY($1::uuid[])
               ORDER BY run_id, phase = 'resolve', idx""",
            ids,
        ):
            by_id[row["run_id"]]["steps"].append(_decode(row, _STEP_SHAPES))
        for row in await conn.fetch(
            """SELECT id::text AS id, run_id::text AS run_id, step_idx, action, risk, state,
                      plan::text AS plan, requested_at, expires_at, decided_by, decided_at,
                      channel, reason
               FROM approvals WHERE run_id = ANY($1::uuid[])
               ORDER BY requested_at, id""",
            ids,
        ):
            by_id[row["run_id"]]["approvals"].append(_decode(row, _APPROVAL_SHAPES))
        for row in await conn.fetch(
            # A row whose time cannot be read (AT_COLUMNS) is placed at its run's creation,
            # and read as unreadable (``_audit``).
            f"""SELECT id, {AT_COLUMNS}, kind, run_id::text AS run_id, data::text AS data,
                       (SELECT created_at FROM runs WHERE runs.id = audit_log.run_id) AS placed
                FROM audit_log WHERE run_id = ANY($1::uuid[]) ORDER BY id""",
            ids,
        ):
            by_id[row["run_id"]]["audit"].append(_audit(row))
        event_ids = [r["event_id"] for r in runs if r["event_id"] is not None]
        events = {
            row["id"]: _decode(row, _EVENT_SHAPES)
            for row in await conn.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM alert_events WHERE id = ANY($1::bigint[])",
                event_ids,
            )
        }
        for run in runs:
            run["event"] = events.get(run["event_id"])

    async def review_events(
        self,
        *,
        since: datetime,
        until: datetime,
        keys: Sequence[str] | None = None,
        limit: int = 20000,
    ) -> list[dict[str, Any]]:
        """Alert events received in [since, until) that nothing was done for: settled without
        a run (``settled_reason``, e.g. no rule matched) or with rules skipped (``skips``),
        oldest first, at most ``limit`` + 1. Retention prunes events: older ones are gone.

        Found through the ``done_at`` index (an event is done at or after its receipt; one
        whose processing ended more than a day after it arrived is not found)."""
        key_clause = "true" if keys is None else _OF_KEYS.format(p="$4::text[]")
        args: list[Any] = [since, until, limit + 1]
        if keys is not None:
            args.append(list(keys))
        with translate():
            rows = await self._pool.fetch(
                f"""SELECT {_EVENT_COLUMNS}, settled_reason, skips::text AS skips
                    FROM alert_events
                    WHERE {_DONE_SINCE.format(lo="$1", hi="$2")}
                      AND received_at >= $1 AND received_at < $2
                      AND (settled_reason IS NOT NULL OR skips <> '[]'::jsonb)
                      AND {key_clause}
                    ORDER BY received_at, id LIMIT $3""",
                *args,
            )
        return [_decode(r, _UNACTED_SHAPES) for r in rows]

    async def review_member_times(
        self, key: str, since: datetime, until: datetime
    ) -> list[tuple[datetime, datetime]]:
        """(start, end) of the members of incident ``key`` that start in [since, until): its
        runs (end: the alert's resolution, else the run's end, else its creation) and the
        firing events whose rules were skipped. For finding where an incident begins and ends
        (``receiver.review.loader``)."""
        with translate():
            rows = await self._pool.fetch(
                f"""SELECT created_at AS start,
                           greatest(created_at, finished_at, resolved_at) AS finish
                    FROM runs WHERE {_RUNS_OF_KEYS.format(p="$1::text[]")}
                      AND created_at >= $2 AND created_at < $3
                    UNION ALL
                    SELECT received_at, received_at FROM alert_events
                    WHERE {_DONE_SINCE.format(lo="$2", hi="$3")}
                      AND received_at >= $2 AND received_at < $3 AND status = 'firing'
                      AND skips @? '$[*] ? (@.rule != null)'
                      AND {_OF_KEYS.format(p="$1::text[]")}""",
                [key],
                since,
                until,
            )
        return [(r["start"], r["finish"]) for r in rows]

    async def review_keys_at(self, at: datetime) -> list[str]:
        """The incident keys of the runs created exactly at ``at``, and of the firing events
        with skipped rules received then (an incident id names its first member's time). At
        Python's first or last instant (written as -infinity and infinity), the runs created
        before or after Python's years too: their creation was edited, and read at that end
        (``receiver.unreadable.UnreadableTime``), it named their incident."""
        with translate():
            rows = await self._pool.fetch(
                f"""SELECT DISTINCT {_KEY} AS key FROM runs WHERE created_at = $1
                    UNION
                    SELECT DISTINCT {_KEY} FROM runs
                    WHERE $1 = '-infinity' AND created_at < '0001-01-01 00:00:00+00'
                    UNION
                    SELECT DISTINCT {_KEY} FROM runs
                    WHERE $1 = 'infinity' AND created_at >= '10000-01-01 00:00:00+00'
                    UNION
                    SELECT DISTINCT {_KEY} FROM alert_events
                    WHERE {_DONE_SINCE.format(lo="$1", hi="$1")}
                      AND received_at = $1 AND skips <> '[]'::jsonb""",
                at,
            )
        return [r["key"] for r in rows]

    async def review_service_audit(
        self, since: datetime, until: datetime, kinds: Sequence[str], *, limit: int = SERVICE_LIMIT
    ) -> list[dict[str, Any]]:
        """The audit rows of ``kinds`` that belong to no run (a pause, a rules reload, the
        service starting, a refusal digest) that may be about [since, until]: appended in it,
        or up to ``SERVICE_LATE`` after it when recorded late (its ``occurred_at`` may be in
        it) or a refusal digest whose window may overlap it. The caller places each exactly
        (``review.notes.service_span``). Oldest first (through the ``at`` index); at most
        ``limit`` of each kind, the first by time, each row with ``total``: how many of its
        kind there were (more than ``limit``: some were left out)."""
        with translate():
            rows = await self._pool.fetch(
                SERVICE_AUDIT_SQL, *service_audit_args(since, until, kinds, limit)
            )
        return [_audit(r) for r in rows]

    async def approval_backlog(self) -> tuple[int, float | None]:
        """(approvals pending, seconds until the first of them expires or None), for the
        metrics an alert on approvals about to expire unseen is written against."""
        with translate():
            row = await self._pool.fetchrow(
                """SELECT count(*) AS pending,
                          extract(epoch FROM min(expires_at) - remediator_now()) AS next_expiry_s
                   FROM approvals WHERE state = 'pending'"""
            )
        next_expiry = row["next_expiry_s"]
        return int(row["pending"]), None if next_expiry is None else float(next_expiry)
