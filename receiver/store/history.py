"""What the engine reads about the past of an event: the runs of its occurrence, recent runs.

Read-only; the engine decides with it (repeat limits, one run per occurrence, a resolved
occurrence).
"""

from __future__ import annotations

from collections.abc import Collection

from receiver.model import AlertEvent, History, Target
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.records import RUN_COLUMNS, run_from_row

__all__ = ["EngineHistory"]


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


class EngineHistory(Database):
    """``history()``: the past of one alert episode, as the engine wants it."""

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
        with whether any of its steps changed something (or would have: a rule test's
        ``simulated`` step). ``recent_runs``: runs created in the
        ``within_s`` seconds before the event was received (before now, for an event with no
        ``received_at``), or later, of exactly the (rule, target) pairs in ``repeats``
        (``engine.repeat_keys``), newest ``limit``. ``episode_resolved``: a resolved event of
        this occurrence is stored (a later firing copy must be ignored). ``settling_runs``:
        verifying runs of the (rule, target) pairs in ``settling`` (``engine.settle_keys``)
        whose alert resolved and whose settle period has not ended.
        """
        # No transaction: under READ COMMITTED it would not give the reads one snapshot, only
        # two more round trips per event. Each read is consistent on its own, and the worker
        # processes one fingerprint's events strictly in order.
        with translate():
            async with self._pool.acquire() as conn:
                episode = await conn.fetch(
                    f"""SELECT {RUN_COLUMNS},
                               EXISTS (SELECT 1 FROM steps
                                       WHERE steps.run_id = runs.id AND steps.phase = 'run'
                                         AND steps.outcome IN ('ok', 'simulated')) AS changed
                        FROM runs
                        WHERE fingerprint = $1 AND starts_at = $2 AND refire = $3
                        ORDER BY created_at, id""",
                    event.fingerprint,
                    event.starts_at,
                    event.refire,
                )
                recent = []
                if repeats:
                    recent = await conn.fetch(
                        f"""SELECT {RUN_COLUMNS} FROM runs
                            WHERE {_of_pairs(2)}
                              AND created_at >= coalesce($7, remediator_now())
                                                - make_interval(secs => $1)
                            ORDER BY created_at DESC, id DESC LIMIT $6""",
                        float(within_s),
                        *_pair_arrays(repeats),
                        limit,
                        event.received_at,
                    )
                settle = []
                if settling:
                    settle = await conn.fetch(
                        f"""SELECT {RUN_COLUMNS} FROM runs
                            WHERE {_of_pairs(1)}
                              AND outcome = 'verifying' AND settle_until IS NOT NULL
                            ORDER BY created_at, id LIMIT $5""",
                        *_pair_arrays(settling),
                        limit,
                    )
                resolved = await conn.fetchval(
                    """SELECT EXISTS (SELECT 1 FROM alert_events
                       WHERE fingerprint = $1 AND starts_at = $2 AND status = 'resolved'
                         AND refire = $3)""",
                    event.fingerprint,
                    event.starts_at,
                    event.refire,
                )
        return History(
            episode_runs=tuple(run_from_row(r).as_prior(changed=r["changed"]) for r in episode),
            recent_runs=tuple(run_from_row(r).as_prior() for r in reversed(recent)),
            episode_resolved=bool(resolved),
            settling_runs=tuple(run_from_row(r).as_prior() for r in settle),
        )
