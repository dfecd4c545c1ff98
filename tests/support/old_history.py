"""The engine's history read as it was before migration 0030: one read a statement, its
parameters those of ``receiver.store.history_sql.history_arguments`` and a tag, $15. The
oracle of test_history_batch.py, which holds the batched read to the rows this returned: the
body of ``engine_history`` as migration 0027 left it, word for word but for one change.

Migration 0033 drops ``engine_history`` and ``remediator_pairs`` (0014), which its 'recent'
part called for the read's (rule, target) pairs, so that call is replaced by the function's
own query, ``SELECT DISTINCT * FROM unnest(kinds, namespaces, names, rules)``, with its
columns' names: the same rows (each pair once, NULLs padding the shorter arrays and compared
as equal by DISTINCT; their order does not matter, the part sorts), from the statement alone.
test_history_batch.py holds this to what ``engine_history`` returned, on the schema before 0033.
"""

from __future__ import annotations

__all__ = ["OLD_HISTORY_SQL"]

OLD_HISTORY_SQL = """
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
           WHERE fingerprint = $1 AND starts_at = $2 AND refire = $3 OFFSET 0) AS runs)
    UNION ALL
    -- The alert's runs of other occurrences still open (their resolution never came) or whose
    -- undo waits for the alert's next resolution (undo_deferred): a later episode proves
    -- the earlier one ended (migration 0026; runs_fingerprint_open). Their undo is the one
    -- kept with each (migration 0025), as for the runs of the episode. And, as 'held', its
    -- closed runs an on_resolved step of which waits for its approval, found from the few
    -- pending approvals (approvals_one_pending_per_step; the LATERAL keeps them the outer
    -- side, so runs is read by id, never walked): a firing withdraws it (migration 0027;
    -- receiver.episodes).
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
            WHERE fingerprint = $1 AND (resolved_at IS NULL OR undo_deferred)
              AND (starts_at <> $2 OR refire <> $3) OFFSET 0)
           UNION ALL
           (SELECT runs.*, true
            FROM (SELECT DISTINCT a.run_id FROM approvals a
                  JOIN steps s ON s.run_id = a.run_id AND s.idx = a.step_idx
                  WHERE a.state = 'pending' AND s.phase = 'resolve' OFFSET 0) AS held
            CROSS JOIN LATERAL (SELECT * FROM runs WHERE runs.id = held.run_id) AS runs
            WHERE runs.fingerprint = $1 AND runs.resolved_at IS NOT NULL
              AND NOT runs.undo_deferred
              AND (runs.starts_at <> $2 OR runs.refire <> $3))) AS runs
     ORDER BY created_at, id LIMIT $14)
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
     -- pairs come from remediator_pairs so that the plan is cached (migration 0014).
     -- [Here: remediator_pairs' query, inline (see the module's docstring).]
     FROM (SELECT DISTINCT * FROM unnest($6::text[], $7::text[], $8::text[], $9::text[]))
          AS pairs(pair_kind, pair_ns, pair_name, pair_rule)
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
, false, NULL::text
     FROM (SELECT * FROM runs
           WHERE (target_kind, target_namespace, target_name, rule) IN (
               SELECT * FROM unnest($10::text[], $11::text[], $12::text[], $13::text[]))
             AND outcome = 'verifying' AND settle_until IS NOT NULL OFFSET 0) AS runs
     ORDER BY created_at, id LIMIT $14)
)
SELECT $15::int AS tag, parts.*,
       EXISTS (SELECT 1 FROM alert_events
               WHERE fingerprint = $1 AND starts_at = $2 AND status = 'resolved'
                 AND refire = $3) AS episode_resolved
FROM (SELECT 1) AS one LEFT JOIN parts ON true
"""
