"""The storm round's unrelated alerts, their latency in parts: where the time from the POST to
the commit of the action goes (intake, the wait for a claim, the pipeline, the run's write).

The store keeps no claim time (a claim's lease columns are cleared when the event is done),
and the event's row is written again after intake, so its insert's commit is lost too. The
bench therefore adds a trace of its own to its database (``TRACE_SETUP``, after the
migrations): an AFTER trigger on ``alert_events`` that fires only for the unrelated alerts'
alert name (its WHEN clause: a storm event costs the trigger's test, nothing else) and records
each change of state with the statement's wall clock and its transaction. The service's code is
not touched. Times of one host's clock (the bench, PostgreSQL and the service share it).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from bench.common import percentile

__all__ = ["PARTS", "TRACE_SETUP", "Parts", "parts_line", "parts_of"]

# The unrelated alerts' rule fires on this alert name (bench/storm.py, unrelated_alert).
TRACE_SETUP = """
CREATE UNLOGGED TABLE bench_trace (
    fingerprint text NOT NULL, starts_at text NOT NULL, state text NOT NULL,
    at timestamptz NOT NULL, xid xid NOT NULL
);
CREATE FUNCTION bench_trace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_trace
    VALUES (NEW.fingerprint, NEW.starts_at, NEW.state, clock_timestamp(),
            pg_current_xact_id()::text::xid);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_trace AFTER INSERT OR UPDATE OF state ON alert_events
    FOR EACH ROW WHEN (NEW.alertname = 'QueueBacklog') EXECUTE FUNCTION bench_trace();
"""

# Per alert (epoch seconds): intake's transaction start (received_at) and its commit; the
# first claim's statement (its wall clock) and its commit; the run's transaction start
# (created_at: the store's now()). The commit of the row that records the action is
# storm_sql.ACTED's (the run's first step, else the run, else the event).
PARTS = """
SELECT e.fingerprint,
       extract(epoch FROM e.received_at)::float8,
       extract(epoch FROM pg_xact_commit_timestamp(i.xid))::float8,
       extract(epoch FROM c.at)::float8,
       extract(epoch FROM pg_xact_commit_timestamp(c.xid))::float8,
       extract(epoch FROM r.created_at)::float8
FROM alert_events e
LEFT JOIN LATERAL (SELECT t.xid FROM bench_trace t
                   WHERE t.fingerprint = e.fingerprint AND t.starts_at = e.starts_at
                     AND t.state = 'pending' ORDER BY t.at LIMIT 1) i ON true
LEFT JOIN LATERAL (SELECT t.at, t.xid FROM bench_trace t
                   WHERE t.fingerprint = e.fingerprint AND t.starts_at = e.starts_at
                     AND t.state = 'claimed' ORDER BY t.at LIMIT 1) c ON true
LEFT JOIN LATERAL (SELECT r.created_at FROM runs r WHERE r.event_id = e.id
                   ORDER BY r.created_at LIMIT 1) r ON true
WHERE e.fingerprint = ANY($1::text[]) AND e.starts_at = $2
"""

# The parts' names, in order: each from the end of the one before (the first from the POST).
NAMES = (
    "to intake's transaction",
    "its commit",
    "to the claim",
    "the claim's commit",
    "to the run's write",
    "the write to its commit",
)


@dataclass(frozen=True)
class Parts:
    """One alert's latency in parts (ms, NaN where a time is missing): ``parts`` in the order
    of ``NAMES``; ``answered_ms``: from the POST until the bench read intake's 200."""

    parts: tuple[float, ...]
    answered_ms: float


def parts_of(
    rows: list[Any],
    posted: dict[str, float],
    answered: dict[str, float],
    committed_ms: dict[str, float],
) -> list[Parts]:
    """``rows``: PARTS' rows (fingerprint, then five epoch times, any None); ``posted`` and
    ``answered``: the bench's POST and answer times (epoch seconds by fingerprint);
    ``committed_ms``: each alert's action's commit, ms from its POST (``Acted.committed_ms``).
    Returns the ``Parts`` of the alerts of ``posted``."""
    out: list[Parts] = []
    for row in rows:
        fingerprint = str(row[0])
        if fingerprint not in posted:
            continue
        at = posted[fingerprint]
        ms = [math.nan if t is None else (float(t) - at) * 1000 for t in row[1:]]
        ms.append(committed_ms.get(fingerprint, math.nan))
        steps = (ms[0], *(b - a for a, b in itertools.pairwise(ms)))
        answer = answered.get(fingerprint)
        out.append(Parts(steps, math.nan if answer is None else (answer - at) * 1000))
    return out


def parts_line(phase: str, parts: list[Parts]) -> str:
    """One line of the report: the medians of each part of ``parts`` (the alerts of
    ``phase``), in ms; NaNs left out of their part's median."""

    def median(values: list[float]) -> str:
        kept = [v for v in values if not math.isnan(v)]
        return f"{percentile(kept, 50):.1f}" if kept else "n/a"

    columns = [median([p.parts[k] for p in parts]) for k in range(len(NAMES))]
    answered = median([p.answered_ms for p in parts])
    return (
        f"  {phase}, medians of each part (ms): "
        + ", ".join(f"{name} {value}" for name, value in zip(NAMES, columns, strict=True))
        + f"; POST to intake's answer {answered}"
    )
