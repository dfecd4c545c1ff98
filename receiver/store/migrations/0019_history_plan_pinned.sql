-- 0019: the engine's history read runs with its plan pinned, in a function.
--
-- The read's plan is made once per connection and kept (a cached generic plan). Made on the
-- statistics of small tables (a new installation, or tables analysed in a quiet hour), it
-- scanned runs and alert_events from end to end to find one episode's rows: a sequential scan
-- of one page looked cheapest then, and it stayed the plan while a storm filled the tables
-- (autovacuum analyses at most once a minute). A storm on a database analysed while empty
-- drained 3.5 times slower than one on a database analysed with a million events stored, the
-- history read taking 1.8 ms instead of 0.08. Its plan now walks indexes whatever the
-- statistics say (no sequential scan; no bitmap scan, which would read every run of a pair in
-- the window before keeping the newest), as the claim's does (migration 0018). A function
-- carries the settings, so the read stays one statement, and the reads sent together stay one
-- pipelined round trip.
--
-- On the statistics of a big store the opposite went wrong: a plan for each call's values looked
-- cheaper than the generic one, so every read was planned again, 0.5 ms of planning for 0.1 ms
-- of work. The function keeps the one generic plan (plan_cache_mode), the plan the tests hold
-- to the rows it returns.
--
-- The body is receiver.store.history.HISTORY_SQL as it was when this migration was written
-- (tests/integration/test_pinned_plans.py keeps the two equal: a change to the read's SQL takes
-- a new migration that replaces this function). Parameters: HISTORY_SQL's, in its order.
CREATE FUNCTION engine_history(text, text, integer, double precision, timestamptz,
                               text[], text[], text[], text[], text[], text[], text[], text[],
                               bigint, integer)
RETURNS TABLE (
    tag integer, part text, pos bigint, id uuid, rule text, fingerprint text, starts_at text,
    alertname text, event_id bigint, target_kind text, target_namespace text,
    target_name text, outcome text, created_at timestamptz, closed boolean, refire integer,
    settle_until timestamptz, changed boolean, episode_resolved boolean
)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $history$
#variable_conflict use_column
BEGIN
RETURN QUERY
WITH parts AS (
    -- The episode's runs and the settling runs are found first and put in order after
    -- (OFFSET 0 keeps the two apart): asked for them in order, the planner may rather walk all
    -- of runs down runs_created and filter, which it takes for the cheapest way when the
    -- statistics it planned on said the table was small (migration 0019).
    (SELECT 'episode' AS part,
            row_number() OVER (ORDER BY created_at, id) AS pos, 
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, created_at, resolved_at IS NOT NULL AS closed, refire, settle_until
,
            EXISTS (SELECT 1 FROM steps
                    WHERE steps.run_id = runs.id AND steps.phase = 'run'
                      AND steps.outcome IN ('ok', 'simulated')) AS changed
     FROM (SELECT * FROM runs
           WHERE fingerprint = $1 AND starts_at = $2 AND refire = $3 OFFSET 0) AS runs)
    UNION ALL
    (SELECT 'recent', row_number() OVER (ORDER BY created_at DESC, id DESC),
            
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, created_at, resolved_at IS NOT NULL AS closed, refire, settle_until
, false
     -- Each pair's newest runs, walked down runs_pair_created, then the newest of them
     -- all: the read costs the runs of these targets, however many other targets the rule
     -- has runs on. (A join of runs to the pairs let the planner walk every recent run of
     -- the rule, or all of runs on the statistics of a table that was small a minute ago:
     -- in a storm on one rule, 2,990 rows read to return 9, three thousand events in.) The
     -- pairs come from remediator_pairs so that the plan is cached (migration 0014).
     FROM remediator_pairs($6::text[], $7::text[], $8::text[], $9::text[])
     CROSS JOIN LATERAL (
         SELECT * FROM runs
         WHERE runs.target_kind = pair_kind AND runs.target_namespace = pair_ns
           AND runs.target_name = pair_name AND runs.rule = pair_rule
           AND runs.created_at >= coalesce($5, remediator_now())
                                  - make_interval(secs => $4)
         ORDER BY runs.created_at DESC, runs.id DESC LIMIT $14) AS runs
     ORDER BY created_at DESC, id DESC LIMIT $14)
    UNION ALL
    (SELECT 'settling', row_number() OVER (ORDER BY created_at, id),
            
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, created_at, resolved_at IS NOT NULL AS closed, refire, settle_until
, false
     FROM (SELECT * FROM runs
           WHERE (target_kind, target_namespace, target_name, rule) IN (SELECT * FROM unnest($10::text[], $11::text[], $12::text[], $13::text[]))
             AND outcome = 'verifying' AND settle_until IS NOT NULL OFFSET 0) AS runs
     ORDER BY created_at, id LIMIT $14)
)
SELECT $15::int AS tag, parts.*,
       EXISTS (SELECT 1 FROM alert_events
               WHERE fingerprint = $1 AND starts_at = $2 AND status = 'resolved'
                 AND refire = $3) AS episode_resolved
FROM (SELECT 1) AS one LEFT JOIN parts ON true;
END
$history$;
