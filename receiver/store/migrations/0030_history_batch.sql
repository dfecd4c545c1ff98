-- 0030: the engine's history reads of a batch in one execution (engine_histories).
--
-- Every event the worker takes reads its past (receiver/store/history.py). The reads asked
-- together (up to 32, receiver/batching.py) went in one round trip, but as one execution of
-- engine_history each (asyncpg's fetchmany): PostgreSQL initialised the function's plan, four
-- UNION ALL parts with their windows, sorts and EXISTS subplans, for every read. In the storm
-- round (`python -m bench --storm-only --stored 100000`) that initialisation alone,
-- standard_ExecutorStart > ExecInitNode under the PL/pgSQL functions, was 11.3 % of all of
-- PostgreSQL's CPU.
--
-- engine_histories takes a batch's reads as arrays, one element a read (the pairs of all reads
-- one after another, each read's the slice between its bounds: receiver.store.history_sql.
-- batch_arguments), and returns each read's rows tagged with its index in the batch. Its body
-- is engine_history's with each parameter replaced by the read's column of `b`, the batch
-- unnested, and the parts joined LATERAL to it: the plan is initialised once for the batch and
-- its parts rescanned for each read, with the same index scans as before. Two parts changed
-- their form, not their rows:
--   - 'held' (closed runs of the alert an on_resolved step of which waits for its approval):
--     the pending approvals, their steps and their runs are read once for the batch
--     (held_runs, materialised) and each read keeps its alert's from those in memory. Read for
--     each read, as before, every pending approval's step and run was looked up again for
--     every read: with 30 pending, 0.72 ms of each read.
--   - 'settling': each of the read's pairs (each once, as for 'recent') looks its
--     settling runs up in runs_settling, a LATERAL subquery fenced with OFFSET 0. As the
--     semi-join of runs to the pairs it was, with the pairs a slice of the batch's, the generic
--     plan walked every run for each read (2,416 rows for 10 on a plan cached on empty tables;
--     test_history_flat.py).
--   - 'recent' and 'settling' take the read's pairs from its slice of the batch's (SELECT
--     DISTINCT * FROM unnest(...)), no longer from remediator_pairs (0014): its estimate of one
--     row kept a custom plan from looking cheaper than the generic one, and the plan is
--     generic whatever the estimates since 0019 (plan_cache_mode). The PL/pgSQL call, twice a
--     read, was a fifth of the batched read's CPU: on 100,000 stored events, the two forms and
--     engine_history in turn on one store, four turns each, medians: 185 µs a read with it,
--     142 without, in batches of 8 (engine_history 330); 135 and 104 in batches of 16 (266).
--     (docs/performance-history.md found no gain inlining it in engine_history, by the
--     execution time of one read under EXPLAIN ANALYZE.) remediator_pairs stays for
--     engine_history.
-- The body is receiver.store.history_sql.HISTORY_SQL as it is now (test_pinned_plans.py keeps
-- the two equal); the settings are engine_history's (0019). test_history_batch.py holds each
-- read of a batch to the rows engine_history returned for it alone, on random stores.
--
-- The plan for a batch of 8 (EXPLAIN (ANALYZE, COSTS OFF) of the generic plan, with the
-- function's settings; `python -m bench.history_reads --explain`: 1,000,000 stored events,
-- 100,000 runs, and a storm's 3,000 recent runs on 1,000 targets, one in three settling and
-- 30 with a pending approval; each read's episode has its run; trimmed):
--   Nested Loop Left Join (rows=40 loops=1)
--     CTE held_runs
--       ->  Nested Loop (rows=10 loops=1)
--             ->  Unique -> Nested Loop (rows=30 loops=1)
--                   ->  Index Only Scan using approvals_one_pending_per_step on approvals a
--                   ->  Index Only Scan using steps_pkey on steps s (rows=1 loops=30)
--             ->  Index Scan using runs_pkey on runs (rows=0.33 loops=30)
--     ->  Function Scan on b (rows=8 loops=1)
--     ->  Append (rows=5 loops=8)
--           ->  WindowAgg -> Sort -> Subquery Scan
--                 ->  Index Scan using runs_episode on runs (rows=1 loops=8)
--                 SubPlan (changed): Index Scan using steps_pkey on steps (loops=8)
--           ->  Limit -> WindowAgg -> Sort -> Append (rows=0 loops=8)
--                 ->  Index Scan using runs_fingerprint_open on runs (rows=0 loops=8)
--                 ->  CTE Scan on held_runs (rows=0 loops=8; 10 removed by filter)
--           ->  Limit -> WindowAgg -> Sort -> Nested Loop (rows=3 loops=8)
--                 ->  HashAggregate -> Function Scan on unnest (rows=1 loops=8)
--                 ->  Limit -> Index Scan using runs_pair_created on runs (rows=3 loops=8)
--           ->  Limit -> WindowAgg -> Sort -> Nested Loop (rows=1 loops=8)
--                 ->  HashAggregate -> Function Scan on unnest (rows=1 loops=8)
--                 ->  Index Scan using runs_settling on runs (rows=1 loops=8)
--     SubPlan (episode_resolved)
--       ->  Index Only Scan using alert_events_dedupe on alert_events (rows=0 loops=40)
--   Execution Time: 1.722 ms (for the 8 reads, under EXPLAIN ANALYZE)
-- Every scan of runs, steps, approvals and alert_events is by an index's conditions; no table
-- or index is walked.
--
-- PostgreSQL's CPU per read (the backend's, from /proc; `python -m bench.history_reads`, the
-- store above, 4,000 reads a turn, turns A B A B, medians of three): batches of 8, 950 µs a
-- read before (engine_history, fetchmany), 205 µs now; batches of 16, 900 µs before, 148 now.
-- With remediator_pairs still (above), and with no pending approval (`--no-held`, as in the
-- storm round; two runs): batches of 8, 717 and 785 µs before, 167 and 197 after; of 16, 660
-- and 710 before, 137 and 167 after. On 100,000 stored events (`--stored 100000 --no-held`,
-- medians of two): 343 µs before, 142 now, in batches of 8; 313 and 125 in batches of 16.
-- engine_history's plan for one read is all index scans too (`--explain` prints it):
-- what went is its start, its PL/pgSQL call and its execution's round of the protocol, for
-- each read.
--
-- engine_history stays: a replica of the version before goes on calling it until it is
-- replaced.
CREATE FUNCTION engine_histories(text[], text[], integer[], double precision[], timestamptz[],
                                 text[], text[], text[], text[], integer[], integer[],
                                 text[], text[], text[], text[], integer[], integer[], bigint[])
RETURNS TABLE (
    tag integer, part text, pos bigint, id uuid, rule text, fingerprint text, starts_at text,
    alertname text, event_id bigint, target_kind text, target_namespace text,
    target_name text, outcome text, created_at timestamptz, closed boolean, refire integer,
    settle_until timestamptz, changed boolean, on_resolved text, episode_resolved boolean
)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $history$
#variable_conflict use_column
BEGIN
RETURN QUERY
-- The closed runs an on_resolved step of which waits for its approval (the 'held' part
-- below), found once for the batch from the few pending approvals
-- (approvals_one_pending_per_step; the LATERAL keeps them the outer side, so runs is read by
-- id, never walked). Found for each read, the plan looked each pending approval's step and
-- run up again for every read of the batch (with 30 pending, 0.72 ms of each read under
-- EXPLAIN ANALYZE; 0.05 ms now, a scan of the ten held runs kept in memory).
WITH held_runs AS MATERIALIZED (
    SELECT runs.*
    FROM (SELECT DISTINCT a.run_id FROM approvals a
          JOIN steps s ON s.run_id = a.run_id AND s.idx = a.step_idx
          WHERE a.state = 'pending' AND s.phase = 'resolve' OFFSET 0) AS pending
    CROSS JOIN LATERAL (SELECT * FROM runs WHERE runs.id = pending.run_id) AS runs
    WHERE runs.resolved_at IS NOT NULL AND NOT runs.undo_deferred
)
SELECT (b.ord - 1)::int AS tag, parts.*,
       EXISTS (SELECT 1 FROM alert_events
               WHERE fingerprint = b.fp AND starts_at = b.sa AND status = 'resolved'
                 AND refire = b.rf) AS episode_resolved
FROM unnest($1::text[], $2::text[], $3::int[], $4::float8[], $5::timestamptz[],
            $10::int[], $11::int[], $16::int[], $17::int[], $18::bigint[])
     WITH ORDINALITY
     AS b(fp, sa, rf, within_s, received, repeat_lo, repeat_hi, settle_lo, settle_hi, lim, ord)
LEFT JOIN LATERAL (
    -- The episode's runs and the settling runs are found first and put in order after
    -- (OFFSET 0 keeps the two apart): asked for them in order, the planner may rather walk all
    -- of runs down runs_created and filter, which it takes for the cheapest way when the
    -- statistics it planned on said the table was small (migration 0019).
    (SELECT 'episode' AS part,
            row_number() OVER (ORDER BY created_at, id) AS pos, 
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, created_at, resolved_at IS NOT NULL AS closed, refire, settle_until
,
            -- Changed something, or may have: a step a worker stopped in (interrupted, or
            -- still started), or one that failed after its request may have reached its
            -- system, may have acted, and its on_resolved steps are then planned too.
            EXISTS (SELECT 1 FROM steps
                    WHERE steps.run_id = runs.id AND steps.phase = 'run'
                      AND (steps.outcome IN ('ok', 'simulated', 'interrupted', 'started')
                           OR (steps.outcome = 'failed' AND steps.may_have_acted)))
              AS changed,
            -- The on_resolved steps it was planned with (NULL: a run created before 0025).
            on_resolved::text AS on_resolved
     FROM (SELECT * FROM runs
           WHERE fingerprint = b.fp AND starts_at = b.sa AND refire = b.rf OFFSET 0) AS runs)
    UNION ALL
    -- The alert's runs of other occurrences still open (their resolution never came) or whose
    -- undo waits for the alert's next resolution (undo_deferred): a later episode proves
    -- the earlier one ended (migration 0026; runs_fingerprint_open). Their undo is the one
    -- kept with each (migration 0025), as for the runs of the episode. And, as 'held', its
    -- closed runs an on_resolved step of which waits for its approval (``held_runs``, above): a
    -- firing withdraws it (migration 0027; receiver.episodes).
    (SELECT CASE WHEN held THEN 'held' ELSE 'other' END,
            row_number() OVER (ORDER BY created_at, id), 
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, created_at, resolved_at IS NOT NULL AS closed, refire, settle_until
,
            EXISTS (SELECT 1 FROM steps
                    WHERE steps.run_id = runs.id AND steps.phase = 'run'
                      AND (steps.outcome IN ('ok', 'simulated', 'interrupted', 'started')
                           OR (steps.outcome = 'failed' AND steps.may_have_acted)))
              AS changed,
            on_resolved::text AS on_resolved
     FROM ((SELECT *, false AS held FROM runs
            WHERE fingerprint = b.fp AND (resolved_at IS NULL OR undo_deferred)
              AND (starts_at <> b.sa OR refire <> b.rf) OFFSET 0)
           UNION ALL
           (SELECT *, true FROM held_runs
            WHERE fingerprint = b.fp AND (starts_at <> b.sa OR refire <> b.rf))) AS runs
     ORDER BY created_at, id LIMIT b.lim)
    UNION ALL
    (SELECT 'recent', row_number() OVER (ORDER BY created_at DESC, id DESC),
            
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, created_at, resolved_at IS NOT NULL AS closed, refire, settle_until
, false, NULL::text
     -- Each pair's newest runs, walked down runs_pair_created, then the newest of them
     -- all: the read costs the runs of these targets, however many other targets the rule
     -- has runs on. (A join of runs to the pairs let the planner walk every recent run of
     -- the rule, or all of runs on the statistics of a table that was small a minute ago:
     -- in a storm on one rule, 2,990 rows read to return 9, three thousand events in.) The
     -- pairs are the read's slice of the batch's, each once. They came from remediator_pairs
     -- (migration 0014), whose estimate of one row kept a custom plan from looking cheaper
     -- than the generic one; the plan is generic whatever the estimates now
     -- (HISTORY_PLAN_SETTINGS), and that PL/pgSQL call, twice a read, was a fifth of the
     -- read's CPU.
     FROM (SELECT DISTINCT * FROM unnest(($6::text[])[b.repeat_lo:b.repeat_hi],
                                             ($7::text[])[b.repeat_lo:b.repeat_hi],
                                             ($8::text[])[b.repeat_lo:b.repeat_hi],
                                             ($9::text[])[b.repeat_lo:b.repeat_hi]))
          AS pairs(pair_kind, pair_ns, pair_name, pair_rule)
     CROSS JOIN LATERAL (
         SELECT * FROM runs
         WHERE runs.target_kind = pair_kind AND runs.target_namespace = pair_ns
           AND runs.target_name = pair_name AND runs.rule = pair_rule
           AND runs.created_at >= coalesce(b.received, remediator_now())
                                  - make_interval(secs => b.within_s)
         ORDER BY runs.created_at DESC, runs.id DESC LIMIT b.lim) AS runs
     ORDER BY created_at DESC, id DESC LIMIT b.lim)
    UNION ALL
    (SELECT 'settling', row_number() OVER (ORDER BY created_at, id),
            
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, created_at, resolved_at IS NOT NULL AS closed, refire, settle_until
, false, NULL::text
     -- Each pair's settling runs, found in runs_settling by the pair (OFFSET 0 keeps the
     -- pair the outer side): as a semi-join of runs to the read's slice of the pairs, the
     -- generic plan walked every settling run, or all of runs, and compared each to the pairs.
     -- Each pair once (DISTINCT), so a run comes once, as from the semi-join.
     FROM (SELECT DISTINCT * FROM unnest(($12::text[])[b.settle_lo:b.settle_hi],
                                             ($13::text[])[b.settle_lo:b.settle_hi],
                                             ($14::text[])[b.settle_lo:b.settle_hi],
                                             ($15::text[])[b.settle_lo:b.settle_hi]))
          AS pairs(pair_kind, pair_ns, pair_name, pair_rule)
     CROSS JOIN LATERAL (
         SELECT * FROM runs
         WHERE runs.target_kind = pair_kind AND runs.target_namespace = pair_ns
           AND runs.target_name = pair_name AND runs.rule = pair_rule
           AND runs.outcome = 'verifying' AND runs.settle_until IS NOT NULL OFFSET 0) AS runs
     ORDER BY created_at, id LIMIT b.lim)
) AS parts ON true;
END
$history$;
