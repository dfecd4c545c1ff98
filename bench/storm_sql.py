"""The storm round's SQL (bench/storm_figures.py runs it): the queue, the unrelated alerts'
latency, pg_stat_statements, transactions, WAL and autovacuum's analyses."""

from __future__ import annotations

# Queued = pending or claimed: the service's own queue-depth gauge counts the same, the same way
# (each state through its partial index: receiver/store/leases.py, Leases._depth).
DEPTH = """SELECT (SELECT count(*) FROM alert_events WHERE state = 'pending')
    + (SELECT count(*) FROM alert_events WHERE state = 'claimed')"""

# When each unrelated alert got its action: its run's first step recorded, else the run
# finished, else its event done. Two times of the row that records it: the time written in it
# (the store's now(), the start of the transaction that wrote it; a step's, the worker's clock
# just before its write) and its transaction's commit (track_commit_timestamp, as the bench's
# PostgreSQL runs: NULL without it), when the action became visible to anyone else: the write's
# own duration (the audit seal included) lies between them. The commit is the xmin's, the last
# transaction to write the row: in this round nothing writes these rows again once they record
# the action (the unrelated alert's rule has no verification, approval or undo, and a done
# event is not touched again).
ACTED = """
SELECT e.fingerprint,
       extract(epoch FROM a.at)::float8 AS acted,
       extract(epoch FROM a.committed)::float8 AS committed,
       coalesce((SELECT r.outcome || coalesce(' by ' || r.refusal_guard, '') FROM runs r
                 WHERE r.event_id = e.id LIMIT 1), 'no run: ' || e.skips::text) AS what
FROM alert_events e
CROSS JOIN LATERAL (
    SELECT c.at, CASE WHEN current_setting('track_commit_timestamp')::bool
                      THEN pg_xact_commit_timestamp(c.xid) END AS committed
    FROM (
        (SELECT s.finished_at AS at, s.xmin AS xid, 1 AS k
         FROM runs r JOIN steps s ON s.run_id = r.id
         WHERE r.event_id = e.id AND s.phase = 'run' AND s.finished_at IS NOT NULL
         ORDER BY s.finished_at LIMIT 1)
        UNION ALL
        (SELECT r.finished_at, r.xmin, 2 FROM runs r
         WHERE r.event_id = e.id AND r.finished_at IS NOT NULL
         ORDER BY r.finished_at LIMIT 1)
        UNION ALL
        SELECT e.done_at, e.xmin, 3
    ) c
    WHERE c.at IS NOT NULL
    ORDER BY c.k LIMIT 1
) a
WHERE e.fingerprint = ANY($1::text[]) AND e.starts_at = $2 AND e.state = 'done'
"""

# When intake stored each alert (its transaction's start): the part of an alert's latency spent
# before the worker could see it.
STORED = """
SELECT fingerprint, extract(epoch FROM received_at)::float8
FROM alert_events WHERE fingerprint = ANY($1::text[]) AND starts_at = $2
"""

# A PL/pgSQL function's statements are not the client's, but those of a deferred trigger run
# at COMMIT, outside any client statement, and pg_stat_statements counts them as top level: a
# statement whose text is in a PL/pgSQL function's body (the public schema's) is counted apart,
# as the server's.
# A statement's text with its constants and parameters as "?": pg_stat_statements records a
# statement run by PL/pgSQL with its constants as they were when it first saw it, sometimes
# replaced by parameters ("SELECT $21 FROM audit_pending ..." for "SELECT 1 FROM ..."), so the
# text is matched against the function bodies in this form.
CONSTANTS_AS_MARKS = "'\\$[0-9]+|''[^'']*''|\\m[0-9]+(\\.[0-9]+)?\\M'"

STATEMENTS = f"""
WITH s AS (
    SELECT calls, total_exec_time, total_plan_time,
           regexp_replace(query, '\\s+', ' ', 'g') AS query
    FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND userid <> (SELECT oid FROM pg_roles WHERE rolname = $1)
), bodies AS (
    -- PL/pgSQL takes "SELECT ... INTO variables FROM" apart: the statement it runs has no INTO;
    -- and it runs "PERFORM x" as "SELECT x".
    SELECT regexp_replace(regexp_replace(regexp_replace(
        regexp_replace(prosrc, '\\s+', ' ', 'g'),
        '(?<!insert)(?<!merge) into (strict )?[a-z_][a-z0-9_.]*( ?, ?[a-z_][a-z0-9_.]*)*',
        '', 'gi'),
        '\\mperform\\M', 'SELECT', 'gi'), {CONSTANTS_AS_MARKS}, '?', 'g') AS body
    FROM pg_proc
    WHERE prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')
      AND pronamespace = 'public'::regnamespace
)
SELECT calls, total_exec_time, query,
       -- A function body holds BEGIN and END too: transaction control is the client's.
       query !~* '^(begin|commit|end|rollback|start|savepoint|release)\\M'
       AND EXISTS (
           -- A whole statement of the body: it ends there (";", " LOOP", or ")" of a
           -- subquery that reads a table, as IF EXISTS (...) runs one: not a "(SELECT 1)" of a
           -- larger statement, which the client's own "SELECT 1" would be taken for).
           SELECT 1 FROM bodies, regexp_replace(query, {CONSTANTS_AS_MARKS}, '?', 'g') AS q
           WHERE strpos(body, q || ';') > 0
              OR (strpos(body, q || ')') > 0 AND q ~* '\\mfrom\\M')
              OR strpos(lower(body), lower(q) || ' loop') > 0
       ) AS in_function,
       total_plan_time
FROM s ORDER BY calls DESC
"""

XACTS = """
SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()
"""

# The whole server's WAL (autovacuum and checkpoints included): what the storm's writes cost
# to log, and how much of it is full-page images (the first change of a page after a
# checkpoint logs the whole 8 kB page).
WAL = "SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal"

ANALYSED = """
SELECT autoanalyze_count, extract(epoch FROM last_autoanalyze)::float8
FROM pg_stat_user_tables WHERE relname = 'alert_events'
"""
