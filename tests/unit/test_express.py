"""The express claim's pure parts (receiver/worker/express.py): which lanes a NOTIFY names, and
where the claim's lane walk starts so that it meets a lane with nothing in progress first."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from receiver.store import MAX_HINTED_LANES
from receiver.worker.express import express_cursor, hinted_lanes


def lane(name: str) -> str:
    return hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()


lanes = st.builds(lane, st.text(max_size=8))


def test_a_payload_names_the_lanes_intake_queued() -> None:
    a, b = lane("HighMemoryUsage"), lane("QueueBacklog")
    assert hinted_lanes(f"{a},{b}") == {a, b}
    assert hinted_lanes(a) == {a}


def test_anything_else_names_none() -> None:
    a = lane("x")
    # A job's NOTIFY, an older replica's, a foreign sender's, too many lanes, a bad digest.
    for payload in ("", None, 7, "hello", f"{a},", f"{a},{a.upper()}", a[:-1], f" {a}"):
        assert hinted_lanes(payload) == frozenset(), payload
    many = ",".join(lane(str(i)) for i in range(MAX_HINTED_LANES + 1))
    assert hinted_lanes(many) == frozenset()
    assert len(hinted_lanes(",".join(lane(str(i)) for i in range(MAX_HINTED_LANES)))) == 64


@given(st.sets(lanes, max_size=6), st.sets(lanes, max_size=6))
def test_the_walk_meets_a_lane_with_nothing_in_progress_first(
    hinted: set[str], in_flight: set[str]
) -> None:
    cursor = express_cursor(hinted, in_flight)
    free = sorted(hinted - in_flight)
    if not free:
        assert cursor is None
        return
    assert cursor is not None
    assert cursor == "" or cursor in in_flight
    # The walk takes lanes after the cursor, in order: the first free hinted lane comes before
    # any lane in progress.
    assert cursor < free[0]
    assert not [x for x in in_flight if cursor < x < free[0]]


def test_with_nothing_in_progress_before_it_the_walk_starts_at_the_beginning() -> None:
    storm, other = sorted([lane("HighMemoryUsage"), lane("QueueBacklog")])
    assert express_cursor({storm}, {other}) == ""
    assert express_cursor({other}, {storm}) == storm
    assert express_cursor({storm}, {storm}) is None
