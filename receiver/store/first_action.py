"""When a run's steps first acted, and the verdict on a resolution dated before that.

A resolution (the alert's ``endsAt``, or the latest a later episode's ``startsAt`` allows) dated
strictly before the run's first step acted cannot have been caused by the run: the alert ended by
itself, most often while its firing waited in the queue during a storm. Such a verification ends
``resolved_before_action`` (``VerifyResult.RESOLVED_BEFORE_ACTION``) and the run ``succeeded``:
its steps did what they were asked, and the rule is not credited with a fix. Both
``Verification.close_run`` and ``Verification.conclude_verification`` decide it in the statement
that would otherwise end the run ``verified``, from the SQL here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from receiver.model import RunOutcome, VerifyResult
from receiver.store.records import as_utc

__all__ = ["CONCLUDE_SQL", "EARLY_ERROR_SQL", "early_data", "early_error_sql", "first_acted_sql"]


def first_acted_sql(run: str) -> str:
    """An SQL expression (timestamptz) for when the run aliased ``run`` (a ``runs`` row in the
    statement) first acted: the earliest ``started_at`` of its steps of phase ``run`` that
    started (``min`` skips the NULLs of those that never did), else the run's own
    ``started_at``; NULL when neither is known (then no resolution is dated before it).
    Reads through the steps' primary key (run_id, phase, idx)."""
    return (
        f"coalesce((SELECT min(s.started_at) FROM steps s"
        f" WHERE s.run_id = {run}.id AND s.phase = 'run'), {run}.started_at)"
    )


def _utc(expr: str) -> str:
    # Milliseconds: two times within the same second still read as the order they compare in.
    return f"""to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


def early_error_sql(resolved: str, acted: str, inferred: str) -> str:
    """An SQL expression (text): the error of a run resolved at ``resolved`` before its first
    step acted at ``acted`` (both timestamptz expressions); ``inferred`` (a boolean expression)
    when the time is a later episode's start, the latest the resolution can have been."""
    return (
        f"'resolved at ' || {_utc(resolved)}"
        f" || CASE WHEN {inferred} THEN ' at the latest (a later episode of the alert began then)'"
        f" ELSE '' END"
        f" || ', before the first step acted at ' || {_utc(acted)}"
        f" || '; not credited to the rule'"
    )


# The error as ``close_run``'s statement writes it (its ``prior`` row: ``at``, ``acted_at``;
# ``$4``: the later episode it was inferred from, else NULL).
EARLY_ERROR_SQL = early_error_sql("prior.at", "prior.acted_at", "$4::text IS NOT NULL")


# The error as ``CONCLUDE_SQL`` writes it: the run's own resolution, inferred or not.
_CONCLUDE_ERROR = early_error_sql(
    "prior.at", "prior.acted_at", "runs.resolution_inferred_from IS NOT NULL"
)

# A verifying run resolved in time (and settled): ``verified``, or ``resolved_before_action``
# (outcome succeeded) when its resolution is dated before its first step acted.
CONCLUDE_SQL = f"""
WITH prior AS (
    SELECT r.id, r.resolved_at AS at, a.acted_at,
           coalesce(r.resolved_at < a.acted_at, false) AS early
    FROM runs r, LATERAL (SELECT {first_acted_sql("r")} AS acted_at) a
    WHERE r.id = $1::uuid
)
UPDATE runs SET
    outcome = CASE WHEN early THEN 'succeeded' ELSE 'verified' END,
    verify_result = CASE WHEN early THEN 'resolved_before_action' ELSE 'verified' END,
    error = CASE WHEN early
                 THEN coalesce(runs.error || '; ', '')
                      || {_CONCLUDE_ERROR}
                 ELSE runs.error END,
    finished_at = coalesce(finished_at, remediator_now())
FROM prior WHERE runs.id = prior.id
RETURNING runs.verify_result, runs.error, runs.resolved_at, prior.acted_at
"""


def early_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``run.outcome`` audit data of a run resolved before its first step acted."""
    return {
        "outcome": RunOutcome.SUCCEEDED.value,
        "verify_result": VerifyResult.RESOLVED_BEFORE_ACTION.value,
        "resolved_at": as_utc(row["resolved_at"]).isoformat(),
        "first_step_acted_at": as_utc(row["acted_at"]).isoformat(),
        "error": row["error"],
    }
