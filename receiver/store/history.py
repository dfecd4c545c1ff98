"""What the engine reads about the past of an event: the runs of its episode and recent runs.

Read-only; the engine decides with it (repeat limits, one run per episode, a resolved episode).
"""

from __future__ import annotations

from collections.abc import Collection

from receiver.model import AlertEvent, History, Target
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.records import RUN_COLUMNS, run_from_row

__all__ = ["EngineHistory"]


class EngineHistory(Database):
    """``history()``: the past of one alert episode, as the engine wants it."""

    async def history(
        self,
        event: AlertEvent,
        within_s: float,
        *,
        repeats: Collection[tuple[str, Target]] = (),
        limit: int = 1000,
    ) -> History:
        """What the engine may know about the past of ``event``.

        ``episode_runs``: every run of the same (fingerprint, starts_at). ``recent_runs``: runs
        created in the last ``within_s`` seconds of exactly the (rule, target) pairs in
        ``repeats`` (``engine.repeat_keys``), newest ``limit``. ``episode_resolved``: a resolved
        event of this episode is stored (a later firing duplicate must be ignored).
        """
        # No transaction: under READ COMMITTED it would not give the reads one snapshot, only
        # two more round trips per event. Each read is consistent on its own, and the worker
        # processes one fingerprint's events strictly in order.
        with translate():
            async with self._pool.acquire() as conn:
                episode = await conn.fetch(
                    f"""SELECT {RUN_COLUMNS} FROM runs
                        WHERE fingerprint = $1 AND starts_at = $2 ORDER BY created_at, id""",
                    event.fingerprint,
                    event.starts_at,
                )
                recent = []
                if repeats:
                    recent = await conn.fetch(
                        f"""SELECT {RUN_COLUMNS} FROM runs
                            WHERE (target_kind, target_namespace, target_name, rule) IN (
                                    SELECT * FROM unnest($2::text[], $3::text[], $4::text[],
                                                         $5::text[]))
                              AND created_at >= now() - make_interval(secs => $1)
                            ORDER BY created_at DESC, id DESC LIMIT $6""",
                        float(within_s),
                        [t.kind for _, t in repeats],
                        [t.namespace for _, t in repeats],
                        [t.name for _, t in repeats],
                        [rule for rule, _ in repeats],
                        limit,
                    )
                resolved = await conn.fetchval(
                    """SELECT EXISTS (SELECT 1 FROM alert_events
                       WHERE fingerprint = $1 AND starts_at = $2 AND status = 'resolved')""",
                    event.fingerprint,
                    event.starts_at,
                )
        return History(
            episode_runs=tuple(run_from_row(r).as_prior() for r in episode),
            recent_runs=tuple(run_from_row(r).as_prior() for r in reversed(recent)),
            episode_resolved=bool(resolved),
        )
