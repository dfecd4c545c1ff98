"""The engine's history read as PostgreSQL runs it: the SQL of the function
``engine_histories`` (migrations 0030, 0034, 0035, 0037 and 0038) and its arguments.

A batch of reads is one execution: the reads' parameters come as arrays, one element a read,
and each read's rows come back with its ``tag``, its position in the batch (0 first).
``receiver.store.history.EngineHistory`` sends them and says what each part holds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from receiver.model import AlertEvent, Target

__all__ = [
    "HISTORY_CALL",
    "HISTORY_PLAN_SETTINGS",
    "HISTORY_SQL",
    "batch_arguments",
    "history_arguments",
]

# The columns of a run the engine reads (``PriorRun``), not the whole run: a storm's event reads
# the recent runs of its targets, and decoding every column of each cost more than the read.
PRIOR_COLUMNS = """
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, created_at, resolved_at IS NOT NULL AS closed, refire, settle_until
"""

# Whether a run changed something, or may have (``PriorRun.changed``), for the rows of ``runs``.
_CHANGED = """EXISTS (SELECT 1 FROM steps
                    WHERE steps.run_id = runs.id AND steps.phase = 'run'
                      AND (steps.outcome IN ('ok', 'simulated', 'interrupted', 'started')
                           OR (steps.outcome = 'failed' AND steps.may_have_acted)))
              AS changed"""


def _read_pairs(first: int, part: str) -> str:
    """SQL of a read's (rule, target) pairs, each once, as rows (pair_kind, pair_ns, pair_name,
    pair_rule): its slice (``b.<part>_lo`` to ``b.<part>_hi``) of the batch's four arrays from
    parameter ``$first`` on (``batch_arguments``)."""
    arrays = ",\n".join(f"(${n}::text[])[b.{part}_lo:b.{part}_hi]" for n in range(first, first + 4))
    return (
        f"(SELECT DISTINCT * FROM unnest({arrays}))\n"
        "          AS pairs(pair_kind, pair_ns, pair_name, pair_rule)"
    )


# The engine's read of the past of a batch of episodes (EngineHistory.history, which says what
# each part is), with the parameters of batch_arguments: each read's own parameters are the
# columns of ``b``, its (rule, target) pairs the slices ``b.repeat_lo:b.repeat_hi`` and
# ``b.settle_lo:b.settle_hi`` of the batch's pair arrays. The body of the function
# engine_histories: a change here takes a migration that replaces it (0030, 0034, 0035, 0037,
# 0038; test_pinned_plans.py).
#
# One execution for the batch: PostgreSQL initialises this plan once and runs its LATERAL part
# again for each read (a rescan, with the read's values), where one call of engine_history
# (0019-0027; dropped in 0033) a read initialised the whole plan, its four parts, windows and
# subplans, for every read: 11 % of PostgreSQL's CPU in a storm went to that alone (migration
# 0030).
HISTORY_SQL = f"""
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
            row_number() OVER (ORDER BY created_at, id) AS pos, {PRIOR_COLUMNS},
            -- Changed something, or may have: a step a worker stopped in (interrupted, or
            -- still started), or one that failed after its request may have reached its
            -- system, may have acted, and its on_resolved steps are then planned too.
            {_CHANGED},
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
            row_number() OVER (ORDER BY created_at, id), {PRIOR_COLUMNS},
            {_CHANGED},
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
            {PRIOR_COLUMNS}, false, NULL::text
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
     FROM {_read_pairs(6, "repeat")}
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
            {PRIOR_COLUMNS}, false, NULL::text
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
     FROM {_read_pairs(12, "settle")}
     CROSS JOIN LATERAL (
         SELECT * FROM runs
         WHERE runs.target_kind = pair_kind AND runs.target_namespace = pair_ns
           AND runs.target_name = pair_name AND runs.rule = pair_rule
           AND runs.outcome = 'verifying' AND runs.settle_until IS NOT NULL
           AND runs.settle_until >= coalesce(b.received, '-infinity'::timestamptz)
         OFFSET 0) AS runs
     ORDER BY created_at, id LIMIT b.lim)
) AS parts ON true
"""

# In force while HISTORY_SQL is planned and run (the function's SET clauses; a test runs them
# before it in its transaction): the plan is cached, and made on whatever statistics the tables
# had then. On those of small tables a sequential scan of one page looked cheapest, and stayed
# the plan while a storm filled them (1.8 ms a read instead of 0.08; migration 0019). No
# bitmap scan either: it would read every run of a pair in the window before keeping the
# newest ``limit``. And the one generic plan, made once per connection, always: on the
# statistics of a big store a plan for each call's values looked cheaper, so every read was
# planned again (0.5 ms of planning for 0.1 of work, a third of the store's CPU per event in a
# storm); the generic plan is the one test_history_flat.py holds to the rows it returns. No
# JIT: a generic plan costed over jit_above_cost was compiled at every call on a server with
# JIT (migration 0031). No sort where a plan without one exists: the 'recent' part asks for an
# order only runs_pair_created gives, and on the statistics of an empty table another index
# and a sort of its rows looked as cheap (migration 0036); every other sort of the statement is
# one that no plan avoids.
HISTORY_PLAN_SETTINGS = (
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;"
    " SET LOCAL enable_sort = off; SET LOCAL plan_cache_mode = force_generic_plan;"
    " SET LOCAL jit = off"
)

# The reads of a batch as the service sends them: HISTORY_SQL with HISTORY_PLAN_SETTINGS, in
# one statement (the function engine_histories, migrations 0030, 0034, 0035, 0037 and 0038,
# whose body is HISTORY_SQL).
HISTORY_CALL = "SELECT * FROM engine_histories(" + ", ".join(f"${n}" for n in range(1, 21)) + ")"


def _pair_arrays(pairs: Collection[tuple[str, Target]]) -> list[list[str]]:
    """The (rule, target) pairs as four arrays, one a column: kinds, namespaces, names, rules."""
    return [
        [t.kind for _, t in pairs],
        [t.namespace for _, t in pairs],
        [t.name for _, t in pairs],
        [rule for rule, _ in pairs],
    ]


def history_arguments(
    event: AlertEvent,
    within_s: float,
    repeats: Collection[tuple[str, Target]],
    settling: Collection[tuple[str, Target]],
    limit: int,
    recent: int | None = None,
) -> tuple[Any, ...]:
    """One read's parameters, in order: fingerprint, starts_at, refire, ``within_s`` (seconds),
    received_at (None: now), the repeat pairs' four arrays, the settle pairs' four arrays,
    ``limit``, the event's id (the runs of later events are left out), ``recent`` (the
    newest earlier runs read of each repeat pair; None: ``limit``). ``batch_arguments`` makes
    HISTORY_SQL's of a batch of them."""
    return (
        event.fingerprint,
        event.starts_at,
        event.refire,
        float(within_s),
        event.received_at,
        *_pair_arrays(repeats),
        *_pair_arrays(settling),
        limit,
        event.id,
        limit if recent is None else recent,
    )


def batch_arguments(reads: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The 20 parameters of HISTORY_SQL (and HISTORY_CALL) for ``reads``, each of
    ``history_arguments``: its rows come back tagged with its index in ``reads``.

    $1-$5: the reads' scalars, one array each; $6-$9: the repeat pairs of all reads, one after
    another, and $10/$11 the first and last (1-based, inclusive: PostgreSQL's array slice) of
    each read's; $12-$15, $16/$17 the same for the settle pairs; $18 each read's limit; $19
    each read's event id; $20 each read's limit of earlier runs per repeat pair."""
    scalars: list[list[Any]] = [[read[i] for read in reads] for i in range(5)]
    repeat: list[list[str]] = [[], [], [], []]
    settle: list[list[str]] = [[], [], [], []]
    bounds: list[list[int]] = [[], [], [], []]
    for read in reads:
        for pairs, first, lo, hi in ((repeat, 5, 0, 1), (settle, 9, 2, 3)):
            bounds[lo].append(len(pairs[0]) + 1)
            for column in range(4):
                pairs[column].extend(read[first + column])
            bounds[hi].append(len(pairs[0]))
    limits = [read[13] for read in reads]
    event_ids = [read[14] for read in reads]
    recent = [read[15] for read in reads]
    return (
        *scalars,
        *repeat,
        bounds[0],
        bounds[1],
        *settle,
        bounds[2],
        bounds[3],
        limits,
        event_ids,
        recent,
    )
