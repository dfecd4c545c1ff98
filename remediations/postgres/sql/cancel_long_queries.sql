-- postgres.cancel_long_queries: statements running longer than a threshold are cancelled
-- (pg_cancel_backend: the statement ends with an error, the session stays).
--
-- One autocommit statement, as terminate_idle.sql: a statement that finished since the
-- preview (the session is idle, or runs a newer statement) no longer matches and is spared.
--
-- What runs: state 'active' (a statement) or 'fastpath function call' (a function called
-- through the fast-path interface, libpq's PQfn: the large-object functions, or any plain
-- function). A fast-path call reports no statement (postgres.c:
-- pgstat_report_activity(STATE_FASTPATH, NULL)), so its query and query_start are still the
-- previous statement's; it is dated by when it entered its state (state_change), or a call
-- just begun on a session whose last statement is old would look old. pg_cancel_backend
-- cancels it as it does a statement.
--   $1 text[]  databases (empty: the database this connection is to)
--   $2 text[]  roles whose statements may be cancelled (the allow-list)
--   $3 text[]  application_name values never touched
--   $4 float8  seconds the current statement (or fast-path call) has run at least
--   $5 int     at most this many statements
--   $6 bool    send the signal (false: preview)
--   $7 int[]          with $8, an approved step's statements: only these (pid, since) pairs
--   $8 timestamptz[]  (NULL: any statement the filter matches)
WITH candidates AS MATERIALIZED (
    SELECT a.pid,
           a.usename::text AS role,
           a.datname::text AS database,
           coalesce(a.application_name, '') AS application,
           a.state,
           s.since,
           extract(epoch FROM now() - s.since)::float8 AS age_s
    FROM pg_stat_activity a
    JOIN pg_roles r ON r.oid = a.usesysid
    CROSS JOIN LATERAL (
        SELECT CASE WHEN a.state = 'fastpath function call' THEN a.state_change
                    ELSE a.query_start END AS since
    ) s
    WHERE a.backend_type = 'client backend'
      AND a.pid <> pg_backend_pid()
      AND a.usename <> current_user
      AND NOT r.rolsuper AND NOT r.rolreplication
      AND a.datname = ANY (CASE WHEN cardinality($1::text[]) = 0
                                THEN ARRAY[current_database()::text] ELSE $1::text[] END)
      AND a.usename = ANY ($2::text[])
      AND coalesce(a.application_name, '') <> ALL ($3::text[])
      -- nor the service's own: its store may share the server under a listed role
      -- (receiver/store/session_name.py names its sessions so)
      AND coalesce(a.application_name, '') NOT LIKE 'alert-remediator%'
      AND a.state IN ('active', 'fastpath function call')
      AND s.since < now() - make_interval(secs => $4)
      AND ($7::int[] IS NULL
           OR (a.pid, s.since) IN (SELECT * FROM unnest($7::int[], $8::timestamptz[])))
    ORDER BY s.since
    LIMIT $5
)
SELECT c.pid, c.role, c.database, c.application, c.state, c.since, c.age_s,
       CASE WHEN $6 THEN pg_cancel_backend(c.pid) ELSE false END AS signalled
FROM candidates c
ORDER BY c.age_s DESC, c.pid
