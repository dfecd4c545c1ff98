"""What the engine reads about the past of an event: the runs of its occurrence, recent runs.

Read-only; the engine decides with it (repeat limits, one run per occurrence, a resolved
occurrence).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from receiver.batching import Coalescer
from receiver.model import AlertEvent, History, PriorRun, RunOutcome, Target
from receiver.store.database import Database
from receiver.store.errors import StoreUnavailable, translate
from receiver.store.group import one_by_one
from receiver.store.records import undo_from_json

__all__ = [
    "HISTORY_CALL",
    "HISTORY_PLAN_SETTINGS",
    "HISTORY_SQL",
    "EngineHistory",
    "OpenRun",
    "history_arguments",
    "history_from_rows",
]

# The most reads sent in one round trip.
_MAX_READS = 32

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


def _of_pairs(first: int) -> str:
    """The SQL predicate "the run's (rule, target) is one of the pairs", given as the four
    text arrays of ``_pair_arrays`` from parameter ``$first`` on."""
    arrays = ", ".join(f"${n}::text[]" for n in range(first, first + 4))
    return f"(target_kind, target_namespace, target_name, rule) IN (SELECT * FROM unnest({arrays}))"


def _pair_arrays(pairs: Collection[tuple[str, Target]]) -> list[list[str]]:
    """The (rule, target) pairs as the parameters of ``_of_pairs``, one array per column."""
    return [
        [t.kind for _, t in pairs],
        [t.namespace for _, t in pairs],
        [t.name for _, t in pairs],
        [rule for rule, _ in pairs],
    ]


# The engine's read of an episode's past (EngineHistory.history, which says what each part is),
# with the parameters of history_arguments. The body of the function engine_history: a change
# here takes a migration that replaces it (0019, 0023, 0024, 0025, 0026, 0027;
# test_pinned_plans.py).
HISTORY_SQL = f"""
WITH parts AS (
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
            row_number() OVER (ORDER BY created_at, id), {PRIOR_COLUMNS},
            {_CHANGED},
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
            {PRIOR_COLUMNS}, false, NULL::text
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
            {PRIOR_COLUMNS}, false, NULL::text
     FROM (SELECT * FROM runs
           WHERE {_of_pairs(10)}
             AND outcome = 'verifying' AND settle_until IS NOT NULL OFFSET 0) AS runs
     ORDER BY created_at, id LIMIT $14)
)
SELECT $15::int AS tag, parts.*,
       EXISTS (SELECT 1 FROM alert_events
               WHERE fingerprint = $1 AND starts_at = $2 AND status = 'resolved'
                 AND refire = $3) AS episode_resolved
FROM (SELECT 1) AS one LEFT JOIN parts ON true
"""


# In force while HISTORY_SQL is planned and run (the function's SET clauses; a test runs them
# before it in its transaction): the plan is cached, and made on whatever statistics the tables
# had then. On those of small tables a sequential scan of one page looked cheapest, and stayed
# the plan while a storm filled them (1.8 ms a read instead of 0.08; migration 0019). No
# bitmap scan either: it would read every run of a pair in the window before keeping the
# newest ``limit``. And the one generic plan, made once per connection, always: on the
# statistics of a big store a plan for each call's values looked cheaper, so every read was
# planned again (0.5 ms of planning for 0.1 of work, a third of the store's CPU per event in a
# storm); the generic plan is the one test_history_flat.py holds to the rows it returns.
HISTORY_PLAN_SETTINGS = (
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;"
    " SET LOCAL plan_cache_mode = force_generic_plan"
)

# The read as the service sends it: HISTORY_SQL with HISTORY_PLAN_SETTINGS, in one statement
# (the function engine_history, migration 0019, whose body is HISTORY_SQL).
HISTORY_CALL = (
    "SELECT * FROM engine_history($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
)


def history_arguments(
    event: AlertEvent,
    within_s: float,
    repeats: Collection[tuple[str, Target]],
    settling: Collection[tuple[str, Target]],
    limit: int,
    tag: int = 0,
) -> tuple[Any, ...]:
    """The parameters of HISTORY_SQL, in order. ``tag`` comes back on every row: it tells the
    reads sent together apart (``EngineHistory``)."""
    return (
        event.fingerprint,
        event.starts_at,
        event.refire,
        float(within_s),
        event.received_at,
        *_pair_arrays(repeats),
        *_pair_arrays(settling),
        limit,
        tag,
    )


class EngineHistory(Database):
    """``history()``: the past of one alert episode, as the engine wants it.

    The reads asked while one is on its way are sent together (``receiver.batching``): one
    round trip for them all (asyncpg's ``fetchmany`` pipelines the executions of the one
    statement), each read the same statement with the same plan as alone, its rows told apart
    by its ``tag``. A storm's events, in progress together, read their pasts together.

    The read is ``HISTORY_CALL``: ``HISTORY_SQL`` run by a function that pins its plan
    (``HISTORY_PLAN_SETTINGS``, migration 0019)."""

    @functools.cached_property
    def _history_reads(self) -> Coalescer[tuple[Any, ...], list[Any]]:
        return Coalescer(
            self._send_history_reads,
            max_batch=_MAX_READS,
            max_in_flight=2,
            stopped=lambda: StoreUnavailable("the read was interrupted: the service stopped"),
        )

    async def _send_history_reads(self, calls: list[tuple[Any, ...]]) -> Sequence[Any]:
        """Each read's rows, or the exception it failed with; StoreUnavailable when the store
        is out of reach."""
        if len(calls) > 1:
            try:
                with translate():
                    rows = await self._pool.fetchmany(
                        HISTORY_CALL, [(*args, tag) for tag, args in enumerate(calls)]
                    )
            except StoreUnavailable:
                raise
            except Exception:
                # Which read failed cannot be told: each is read again alone.
                return await one_by_one(calls, self._read_alone)
            split: list[list[Any]] = [[] for _ in calls]
            for row in rows:
                split[row["tag"]].append(row)
            return split
        return await one_by_one(calls, self._read_alone)

    async def _read_alone(self, args: tuple[Any, ...]) -> list[Any]:
        with translate():
            return [await self._pool.fetch(HISTORY_CALL, *args, 0)]

    async def open_runs(self, rules: Sequence[str], limit: int = 100) -> list[OpenRun]:
        """The runs of ``rules`` not closed yet (their alert has not resolved), oldest first, at
        most ``limit``: what a rules reload that removes them leaves open. A run that ended
        without acting (refused, dry-run, rejected, expired, cancelled) has nothing to undo and
        is left out."""
        with translate():
            rows = await self._pool.fetch(
                """SELECT rule, id::text AS id, on_resolved IS NOT NULL AS kept FROM runs
                   WHERE rule = ANY($1::text[]) AND resolved_at IS NULL
                     AND outcome NOT IN ('refused', 'dry_run', 'rejected', 'expired',
                                         'cancelled')
                   ORDER BY created_at, id LIMIT $2""",
                list(rules),
                limit,
            )
        return [OpenRun(r["rule"], r["id"], r["kept"]) for r in rows]

    async def history(
        self,
        event: AlertEvent,
        within_s: float,
        *,
        repeats: Collection[tuple[str, Target]] = (),
        settling: Collection[tuple[str, Target]] = (),
        limit: int = 1000,
    ) -> History:
        """What the engine may know about the past of ``event``.

        ``episode_runs``: every run of the same occurrence (fingerprint, starts_at, refire),
        with whether any of its steps changed something or may have (``PriorRun.changed``:
        ok; a rule test's ``simulated`` step; one a worker stopped in, ``interrupted`` or
        still ``started``; one ``failed`` that may have acted, ``StepRecord.may_have_acted``).
        ``recent_runs``: runs created in the
        ``within_s`` seconds before the event was received (before now, for an event with no
        ``received_at``), or later, of exactly the (rule, target) pairs in ``repeats``
        (``engine.repeat_keys``), newest ``limit``. ``episode_resolved``: a resolved event of
        this occurrence is stored (a later firing copy must be ignored). ``settling_runs``:
        verifying runs of the (rule, target) pairs in ``settling`` (``engine.settle_keys``)
        whose alert resolved and whose settle period has not ended. ``other_runs``: the
        alert's (same fingerprint) runs of other occurrences (another startsAt or refire) that
        are still open (``closed`` false: no resolution of them came) or whose on_resolved
        steps wait for the alert's next resolution (``closed`` true: ``undo_deferred``) or for
        an approval (``closed`` and ``undo_held``: a pending approval of one), oldest first, at most
        ``limit`` (``receiver.episodes``). The runs of the episode and of other episodes carry
        the on_resolved steps kept with them (``PriorRun.on_resolved``; None for a run created
        before migration 0025).
        """
        # One statement, one snapshot, one round trip: the runs of the occurrence, the recent
        # runs of the repeat pairs, the settling runs of the settle pairs and the alert's open
        # runs of other episodes (each part with
        # its own order, ``pos``), and whether the occurrence resolved, on every row (and on
        # the one row there is when no run is found).
        with translate():
            rows = await self._history_reads(
                history_arguments(event, within_s, repeats, settling, limit)[:-1]
            )
        return history_from_rows(rows)


@dataclass(frozen=True, slots=True)
class OpenRun:
    """A run whose alert has not resolved (``EngineHistory.open_runs``): ``kept`` when its
    on_resolved steps are kept with it (created since migration 0025)."""

    rule: str
    run_id: str
    kept: bool


def history_from_rows(rows: Sequence[Mapping[str, Any]]) -> History:
    """The ``History`` the rows of one ``HISTORY_CALL`` read make (at least one row: the read
    returns one, with no ``part``, when it finds no run). Each part's rows are in its own
    order (``pos``; rows of one ``pos`` in the order read); 'other' and 'held' rows are the
    alert's other runs, in one order."""
    # One pass over the rows into their parts, where a sort of them all and a filter per part
    # walked them five times for every event of a storm.
    episode: list[Any] = []
    recent: list[Any] = []
    settle: list[Any] = []
    other: list[Any] = []
    parts = {
        "episode": episode,
        "recent": recent,
        "settling": settle,
        "other": other,
        "held": other,
    }
    for row in rows:
        part = parts.get(row["part"])
        if part is not None:
            part.append(row)
    for part in (episode, recent, settle, other):
        part.sort(key=_by_pos)
    resolved = rows[0]["episode_resolved"]
    return History(
        episode_runs=tuple(prior_from_row(r) for r in episode),
        recent_runs=tuple(prior_from_row(r) for r in reversed(recent)),
        episode_resolved=bool(resolved),
        settling_runs=tuple(prior_from_row(r) for r in settle),
        other_runs=tuple(prior_from_row(r, held=r["part"] == "held") for r in other),
    )


def _by_pos(row: Mapping[str, Any]) -> Any:
    return row["pos"]


def prior_from_row(row: Mapping[str, Any], *, held: bool = False) -> PriorRun:
    """A PriorRun from a row of ``PRIOR_COLUMNS`` and ``changed`` (false but for the runs of
    the episode and of other episodes: whether one of its steps changed something, or may
    have), and, for those same runs, the ``on_resolved`` steps kept with the run
    (``undo_from_json``). ``held``: ``PriorRun.undo_held``."""
    kept = row.get("on_resolved")
    key = (row["target_kind"], row["target_namespace"], row["target_name"])
    target = _TARGETS.get(key)
    if target is None:
        if len(_TARGETS) >= _TARGETS_MAX:
            _TARGETS.clear()  # a bound, not an eviction policy
        target = _TARGETS[key] = Target(*key)
    outcome = _OUTCOMES.get(row["outcome"]) or RunOutcome(row["outcome"])
    # Positional, in PriorRun's declared order: keywords cost a fifth of a row's decoding
    # (tests/unit/test_hot_paths.py holds it to the keyword form).
    return PriorRun(
        str(row["id"]),
        row["rule"],
        target,
        row["fingerprint"],
        row["starts_at"],
        row["created_at"],
        outcome,
        row["closed"],
        row["refire"],
        row["event_id"],
        row["changed"],
        row["alertname"],
        row["settle_until"],
        None if kept is None else undo_from_json(kept),
        held,
    )


# A storm's event reads a dozen earlier runs of its target, each a PriorRun (issue 12): the
# rows' targets are few (a Target is immutable, so one serves every row naming it) and their
# outcomes a handful.
_TARGETS: dict[tuple[str, str, str], Target] = {}
_TARGETS_MAX = 4096
_OUTCOMES = {outcome.value: outcome for outcome in RunOutcome}
