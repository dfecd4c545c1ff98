-- 0038: the engine's history read takes, of a pair's settling runs, only those still settling.
--
-- The 'settling' part of engine_histories read every run of a (rule, target) pair that was
-- verifying with a settle_until, however long ago that had passed; the engine fails only those
-- whose settle_until the firing's arrival has not passed (engine._recurrences). A run stays
-- verifying past its settle_until until its verify_deadline job ends it (verified), and for
-- good when that job is dead (its attempts used up) or dropped by an operator: nothing else
-- ends it. Every firing of the pair then read each such run again, and, the part read oldest
-- first up to the read's limit, enough of them pushed a run still settling out of the read:
-- its recurrence was missed.
--
-- The part now leaves out the runs whose settle_until is before the event's arrival (none when
-- it has no arrival: the engine's clock decides then), exactly the engine's test, and
-- runs_settling ends in settle_until so that the index starts past them instead of reading
-- them (the same rows, the same pairs, one column more).
--
-- The function of 20 parameters is replaced in place: a replica of the release before reads
-- with it, and its engine drops the same runs this read leaves out. The 18 parameters' one
-- (0030 to 0036, kept for 0037's rolling update) is left as it is. The body is
-- receiver.store.history_sql.HISTORY_SQL as it is now (test_pinned_plans.py keeps the two
-- equal).

DROP INDEX runs_settling;
CREATE INDEX runs_settling
    ON runs (rule, target_kind, target_namespace, target_name, settle_until)
    WHERE outcome = 'verifying' AND settle_until IS NOT NULL;

CREATE OR REPLACE FUNCTION engine_histories(text[], text[], integer[], double precision[], timestamptz[],
                                 text[], text[], text[], text[], integer[], integer[],
                                 text[], text[], text[], text[], integer[], integer[], bigint[],
                                 bigint[], bigint[])
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
SET jit = off
SET enable_sort = off
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
SELECT (b.ord - 1)::int AS tag, parts.*, b.resolved AS episode_resolved
-- Whether the read's episode resolved, looked up once for the read (OFFSET 0 keeps b a
-- subquery of its own, evaluated before the join), by its key in alert_events_dedupe (OFFSET 0
-- in the EXISTS keeps PostgreSQL from answering it from a hash of every resolved event in
-- the store). In the select list of the join it was asked again for each row the read
-- returned (66 probes an event in a 3,000-alert storm on 10 targets, growing with it); on
-- other statistics the generic plan hashed every resolved event of the store for each
-- batch instead (migration 0035; test_history_flat.py).
FROM (SELECT b.*,
             EXISTS (SELECT 1 FROM alert_events
                     WHERE fingerprint = b.fp AND starts_at = b.sa AND status = 'resolved'
                       AND refire = b.rf OFFSET 0) AS resolved
      FROM unnest($1::text[], $2::text[], $3::int[], $4::float8[], $5::timestamptz[],
                  $10::int[], $11::int[], $16::int[], $17::int[], $18::bigint[],
                  $19::bigint[], $20::bigint[])
           WITH ORDINALITY
           AS b(fp, sa, rf, within_s, received, repeat_lo, repeat_hi, settle_lo, settle_hi,
                lim, read_event, recent_lim, ord)
      OFFSET 0) AS b
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
     -- The pair's target name is compared as "= ANY (ARRAY[...])" and leads the order: that
     -- order only runs_pair_created gives (migration 0034). Compared with "=", each column
     -- of the pair is a constant to the planner inside the LATERAL, so the order asked was
     -- (created_at DESC, id DESC), which runs_created gives as well, and the generic plan
     -- chose between the two on the statistics' count of targets: on those of a young store
     -- (2,000 runs on 10 targets) it walked the window's runs of every target down
     -- runs_created for each pair, 489 rows read an event in a 1,000-alert storm and growing
     -- with the storm, where the pairs' own runs are 49 (test_history_flat.py). In this
     -- order runs_created must be read whole for the window and sorted before its first row
     -- comes out, and runs_pair_created stops at the pair's limit.
     -- The pair's limit is the read's recent_lim, what the rules ask (engine.recent_limit:
     -- the highest repeated.times of the matching rules, migration 0037), not b.lim: the
     -- engine counts at most that many earlier occurrences, so the rows past it decided
     -- nothing, and a storm on few targets read every run of each in the window (148 rows
     -- an event in a 3,000-alert storm on 10 targets, growing with it). For the newest
     -- recent_lim to hold the ones the engine counts, the runs of later events (a larger
     -- event_id), which it never counts and which are the newest, are left out here too (a
     -- retried event may find any number of them); the event's own occurrence, which it
     -- does not count either, is at most one run of the pair, and recent_lim has room for
     -- it (receiver.repetitions). With no event id the read is the one before 0037.
     FROM (SELECT DISTINCT * FROM unnest(($6::text[])[b.repeat_lo:b.repeat_hi],
($7::text[])[b.repeat_lo:b.repeat_hi],
($8::text[])[b.repeat_lo:b.repeat_hi],
($9::text[])[b.repeat_lo:b.repeat_hi]))
          AS pairs(pair_kind, pair_ns, pair_name, pair_rule)
     CROSS JOIN LATERAL (
         SELECT * FROM runs
         WHERE runs.target_kind = pair_kind AND runs.target_namespace = pair_ns
           AND runs.target_name = ANY (ARRAY[pair_name]) AND runs.rule = pair_rule
           AND runs.created_at >= coalesce(b.received, remediator_now())
                                  - make_interval(secs => b.within_s)
           AND (runs.event_id IS NULL OR b.read_event IS NULL OR runs.event_id <= b.read_event)
         ORDER BY runs.target_name, runs.created_at DESC, runs.id DESC
         LIMIT b.recent_lim) AS runs
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
     -- Only those whose settle period had not ended when the event arrived: the engine fails
     -- no other (engine._recurrences: received_at <= settle_until; with no arrival, its own
     -- clock, so every one is read). A run stays verifying past its settle_until until its
     -- verify_deadline job ends it, and for good when that job is dead or dropped: read
     -- by the pair alone, such runs were read by every firing of the pair, and, oldest
     -- first, could push a run still settling past the read's limit (migration 0038, whose
     -- runs_settling ends in settle_until so that the index skips them).
     FROM (SELECT DISTINCT * FROM unnest(($12::text[])[b.settle_lo:b.settle_hi],
($13::text[])[b.settle_lo:b.settle_hi],
($14::text[])[b.settle_lo:b.settle_hi],
($15::text[])[b.settle_lo:b.settle_hi]))
          AS pairs(pair_kind, pair_ns, pair_name, pair_rule)
     CROSS JOIN LATERAL (
         SELECT * FROM runs
         WHERE runs.target_kind = pair_kind AND runs.target_namespace = pair_ns
           AND runs.target_name = pair_name AND runs.rule = pair_rule
           AND runs.outcome = 'verifying' AND runs.settle_until IS NOT NULL
           AND runs.settle_until >= coalesce(b.received, '-infinity'::timestamptz)
         OFFSET 0) AS runs
     ORDER BY created_at, id LIMIT b.lim)
) AS parts ON true;
END
$history$;
