"""The storm bench's history: events already stored, inserted with SQL in a few statements.

What a month of a catch-all feed leaves behind: ``count`` finished alert events, received over
the last 28 days and done, nine in ten settled by intake (no rule matched), one in ten matched
by the shipped ``restart-on-high-memory`` rule on one of the bench's Deployments and finished
by the worker, with its dry-run run and step. All of it is older than the rules' windows (an
hour), so it refuses nothing in the storm; it is there for the claims and the queue-depth
count to walk past, as issue 12 asks (1,000,000 by default). The audit log is left empty: its
rows are chained by hashes only the service computes.

The columns are those of receiver/store/migrations/*.sql.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["NAMESPACE", "RULE", "seed"]

NAMESPACE = "bench"
RULE = "restart-on-high-memory"
# Rows per INSERT: progress is printed between them.
_CHUNK = 200_000

# $1, $2: the first and last row number of this chunk; $3: how many rows in all; $4: targets.
# Row i was received at a time spread evenly from 28 days ago to 2 hours ago; its fingerprint
# is i in 16 hex digits and its startsAt that time, so no key meets a storm alert's.
_EVENTS = """
INSERT INTO alert_events (
    fingerprint, starts_at, status, labels, annotations, alertname, group_key, receiver,
    received_at, not_before, state, attempts, done_at, settled_reason)
SELECT lpad(to_hex(i), 16, '0'),
       to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
       'firing',
       jsonb_build_object(
           'alertname', name, 'namespace', $5::text, 'severity', 'warning',
           'instance', 'pod-' || i, 'deployment', 'web-' || (i % $4)),
       jsonb_build_object('summary', 'stored alert ' || i),
       name,
       '{}:{alertname="' || name || '"}',
       'remediator',
       t, t,
       'done',
       CASE WHEN matched THEN 1 ELSE 0 END,
       t + interval '200 milliseconds',
       CASE WHEN matched THEN NULL ELSE 'no rule matches' END
FROM generate_series($1::bigint, $2::bigint) AS i,
     LATERAL (SELECT i % 10 = 0 AS matched,
                     now() - interval '28 days'
                         + (interval '28 days' - interval '2 hours') * (i::float8 / $3) AS t) AS r,
     LATERAL (SELECT CASE WHEN matched THEN 'HighMemoryUsage' ELSE 'StoredAlert' END AS name) AS n
"""

# The worker's record of each matched event: a dry-run run and its one step.
_RUNS = """
INSERT INTO runs (
    rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, dry_run, created_at, started_at, finished_at, group_key)
SELECT $1, fingerprint, starts_at, alertname, id, 'Deployment', labels->>'namespace',
       labels->>'deployment', 'dry_run', true, received_at + interval '50 milliseconds',
       received_at + interval '60 milliseconds', received_at + interval '150 milliseconds',
       group_key
FROM alert_events
WHERE alertname = 'HighMemoryUsage' AND state = 'done'
"""

_STEPS = """
INSERT INTO steps (run_id, phase, idx, action, outcome, message, attempts, started_at,
                   finished_at)
SELECT id, 'run', 0, 'kubernetes.rollout_restart', 'dry_run', 'dry run: would restart', 1,
       started_at, finished_at
FROM runs WHERE rule = $1
"""


async def seed(conn: Any, count: int, targets: int) -> float:
    """Insert ``count`` finished events (and the runs of one in ten) on ``conn`` (asyncpg, a
    migrated database with no events yet), vacuum and analyse them as autovacuum would, and
    checkpoint; return the seconds it took. Prints progress."""
    t0 = time.perf_counter()
    for first in range(1, count + 1, _CHUNK):
        last = min(count, first + _CHUNK - 1)
        await conn.execute(_EVENTS, first, last, count, targets, NAMESPACE)
        print(f"[storm] stored events: {last:,} of {count:,} …", flush=True)
    await conn.execute(_RUNS, RULE)
    await conn.execute(_STEPS, RULE)
    # The visibility map and the planner's counts, as a server that has run for a month has.
    for table in ("alert_events", "runs", "steps"):
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    # Written out now, as a month's inserts would have been: otherwise the checkpoint that
    # writes them lands in the storm and is counted as its CPU.
    await conn.execute("CHECKPOINT")
    return time.perf_counter() - t0
