"""The express claim: an alert name that arrives while a storm fills every slot is claimed at
once, not when half the slots have freed up. Pure: no I/O.

Under a backlog the worker claims in batches, half its slots at a time (``loop.py``), so an
event that arrives meanwhile waits for the next batch and then for its cohort: a few cohort
times, which is most of the latency of an unrelated alert during a storm (issue 12: p50 66 ms
while a storm was being posted, 26 ms once it was queued). Intake's NOTIFY names the lanes
(``md5(alertname)``, ``receiver.store.claims``) of the events it queued. When one names a lane
that has nothing in progress here, the worker claims one event beyond its concurrency, at most
one such at a time, with the lane walk starting just before that lane: the claim's own
fairness then gives it that lane's head (or that of another lane with nothing in progress).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from receiver.store import MAX_HINTED_LANES

__all__ = ["express_cursor", "hinted_lanes"]

_LANE = re.compile(r"[0-9a-f]{32}")


def hinted_lanes(payload: object) -> frozenset[str]:
    """The lanes a NOTIFY payload names: comma-separated md5 digests. Anything else (a job's
    empty payload, an older replica's, a foreign sender's) names none."""
    if not isinstance(payload, str) or not payload:
        return frozenset()
    lanes = payload.split(",")
    if len(lanes) > MAX_HINTED_LANES or not all(_LANE.fullmatch(lane) for lane in lanes):
        return frozenset()
    return frozenset(lanes)


def express_cursor(hinted: Iterable[str], in_flight: Collection[str]) -> str | None:
    """The cursor (``after_lane``) of an express claim for the ``hinted`` lanes, or None when
    every one of them has an event in progress (``in_flight``: the lanes of this worker's
    events in progress).

    The claim walks lanes after its cursor in order. For the first hinted lane ``x`` with
    nothing in progress the cursor is the greatest lane in progress before ``x`` ('' when
    none is): every lane the walk meets before ``x`` has nothing in progress either, so
    whichever it takes is as fair a pick."""
    free = sorted(lane for lane in hinted if lane not in in_flight)
    if not free:
        return None
    first = free[0]
    return max((lane for lane in in_flight if lane < first), default="")
