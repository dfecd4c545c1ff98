-- postgres.terminate_idle: sessions idle (in a transaction) longer than a threshold.
--
-- One autocommit statement: the filter is evaluated in the same statement that sends the
-- signal, so a session that became active (or merely changed state) since the preview no
-- longer matches and is spared. With $7 = false it only lists what it would end (preview).
-- The CTE is MATERIALIZED so that LIMIT bounds the signals, not just the rows returned.
--   $1 text[]  databases (empty: the database this connection is to)
--   $2 text[]  roles whose sessions may be ended (the allow-list)
--   $3 text[]  application_name values never touched (pg_dump, ...)
--   $4 text[]  states: 'idle in transaction', 'idle in transaction (aborted)', 'idle'
--   $5 float8  seconds in that state at least
--   $6 int     at most this many sessions
--   $7 bool    send the signal (false: preview)
--   $8 int[]          with $9, an approved step's sessions: only these (pid, since) pairs
--   $9 timestamptz[]  (NULL: any session the filter matches)
WITH candidates AS MATERIALIZED (
    SELECT a.pid,
           a.usename::text AS role,
           a.datname::text AS database,
           coalesce(a.application_name, '') AS application,
           a.state,
           a.state_change AS since,
           extract(epoch FROM now() - a.state_change)::float8 AS age_s
    FROM pg_stat_activity a
    JOIN pg_roles r ON r.oid = a.usesysid
    WHERE a.backend_type = 'client backend'             -- not walsenders, autovacuum, workers
      AND a.pid <> pg_backend_pid()                     -- not this session
      AND a.usename <> current_user                     -- nor any other session of our role
      AND NOT r.rolsuper AND NOT r.rolreplication       -- never superusers or replication roles
      AND a.datname = ANY (CASE WHEN cardinality($1::text[]) = 0
                                THEN ARRAY[current_database()::text] ELSE $1::text[] END)
      AND a.usename = ANY ($2::text[])
      AND coalesce(a.application_name, '') <> ALL ($3::text[])
      -- nor the service's own: its store may share the server under a listed role
      -- (receiver/store/session_name.py names its sessions so)
      AND coalesce(a.application_name, '') NOT LIKE 'alert-remediator%'
      AND a.state = ANY ($4::text[])
      AND a.state_change < now() - make_interval(secs => $5)
      AND ($8::int[] IS NULL
           OR (a.pid, a.state_change) IN (SELECT * FROM unnest($8::int[], $9::timestamptz[])))
    ORDER BY a.state_change
    LIMIT $6
)
SELECT c.pid, c.role, c.database, c.application, c.state, c.since, c.age_s,
       CASE WHEN $7 THEN pg_terminate_backend(c.pid) ELSE false END AS signalled
FROM candidates c
ORDER BY c.age_s DESC, c.pid
