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
from receiver.store.history_sql import (
    HISTORY_CALL,
    HISTORY_PLAN_SETTINGS,
    HISTORY_SQL,
    batch_arguments,
    history_arguments,
)
from receiver.store.undo_plans import kept_undo

__all__ = [
    "HISTORY_CALL",
    "HISTORY_PLAN_SETTINGS",
    "HISTORY_SQL",
    "OPEN_RUNS_SQL",
    "EngineHistory",
    "OpenRun",
    "batch_arguments",
    "history_arguments",
    "history_from_rows",
]

# The most reads sent in one execution.
_MAX_READS = 32


class EngineHistory(Database):
    """``history()``: the past of one alert episode, as the engine wants it.

    The reads asked while one is on its way are sent together (``receiver.batching``), up to
    32: one statement, one round trip and one execution for them all (``HISTORY_CALL``, the
    function engine_histories, migrations 0030, 0037 and 0038, which runs ``HISTORY_SQL`` with
    its plan pinned by ``HISTORY_PLAN_SETTINGS``), each read's rows told apart by its ``tag``,
    its index in the batch. A storm's events, in progress together, read their pasts together."""

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
                    rows = await self._pool.fetch(HISTORY_CALL, *batch_arguments(calls))
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
        """The rows of one read, as a one-item list (``one_by_one``)."""
        with translate():
            return [await self._pool.fetch(HISTORY_CALL, *batch_arguments([args]))]

    async def open_runs(self, rules: Sequence[str], limit: int = 100) -> list[OpenRun]:
        """The runs of ``rules`` not closed yet (their alert has not resolved), oldest first, at
        most ``limit``: what a rules reload that removes them leaves open. A run that ended
        without acting (refused, dry-run, rejected, expired, cancelled) has nothing to undo and
        is left out."""
        with translate():
            rows = await self._pool.fetch(OPEN_RUNS_SQL, list(rules), limit)
        return [OpenRun(r["rule"], r["id"], r["kept"]) for r in rows]

    async def history(
        self,
        event: AlertEvent,
        within_s: float,
        *,
        repeats: Collection[tuple[str, Target]] = (),
        settling: Collection[tuple[str, Target]] = (),
        limit: int = 1000,
        recent: int = 1000,
    ) -> History:
        """What the engine may know about the past of ``event``.

        ``episode_runs``: every run of the same occurrence (fingerprint, starts_at, refire),
        with whether any of its steps changed something or may have (``PriorRun.changed``:
        ok; a rule test's ``simulated`` step; one a worker stopped in, ``interrupted`` or
        still ``started``; one ``failed`` that may have acted, ``StepRecord.may_have_acted``).
        ``recent_runs``: runs created in the
        ``within_s`` seconds before the event was received (before now, for an event with no
        ``received_at``), or later, of exactly the (rule, target) pairs in ``repeats``
        (``engine.repeat_keys``), but none of a later event (a larger ``event_id``), the newest
        ``recent`` of each pair (``engine.recent_limit``: what the rules can count) and newest
        ``limit`` of them all. ``episode_resolved``: a resolved event of
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
                history_arguments(event, within_s, repeats, settling, limit, recent)
            )
        return history_from_rows(rows)


# The open runs of some rules ($1), oldest first, at most $2 (``EngineHistory.open_runs``).
OPEN_RUNS_SQL = """SELECT rule, id::text AS id, on_resolved IS NOT NULL AS kept FROM runs
   WHERE rule = ANY($1::text[]) AND resolved_at IS NULL
     AND outcome NOT IN ('refused', 'dry_run', 'rejected', 'expired', 'cancelled')
   ORDER BY created_at, id LIMIT $2"""


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
    (``kept_undo``: one that cannot be read is said in ``on_resolved_unreadable``).
    ``held``: ``PriorRun.undo_held``."""
    kept, unreadable = kept_undo(row.get("on_resolved"))
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
        kept,
        held,
        unreadable,
    )


# A storm's event reads a dozen earlier runs of its target, each a PriorRun (issue 12): the
# rows' targets are few (a Target is immutable, so one serves every row naming it) and their
# outcomes a handful.
_TARGETS: dict[tuple[str, str, str], Target] = {}
_TARGETS_MAX = 4096
_OUTCOMES = {outcome.value: outcome for outcome in RunOutcome}
