"""The resolution a withdrawn undo waits for, when it is on record already
(receiver.episodes.resolved_since): a withdrawal that commits after that resolution was
processed carries the undo itself (``Store.withdraw_refired_undo``)."""

from __future__ import annotations

from receiver.episodes import Occurrence, fires_again, resolved_since
from receiver.model import Status

S1 = "2024-05-01T11:00:00.5Z"
S2 = "2024-05-01T11:20:00.123456789Z"
S3 = "2024-05-01T13:40:00+02:00"  # 11:40Z: later than S2, though it reads earlier as text
FIRING, RESOLVED = Status.FIRING, Status.RESOLVED


def ev(id: int, starts_at: str, status: Status, refire: int = 0) -> Occurrence:
    return Occurrence(id, starts_at, refire, status)


def test_the_resolution_of_the_later_occurrence_is_named() -> None:
    events = [ev(1, S1, FIRING), ev(3, S2, FIRING), ev(4, S2, RESOLVED)]
    assert resolved_since(events, S1, 0) == 4
    assert fires_again(events, S1, 0) is None


def test_a_later_occurrence_still_firing_has_no_resolution_yet() -> None:
    events = [ev(1, S1, FIRING), ev(3, S2, FIRING)]
    assert resolved_since(events, S1, 0) is None
    assert fires_again(events, S1, 0) == 3


def test_only_the_latest_occurrences_resolution_counts() -> None:
    # S2 resolved, then S3 fired: the undo waits for S3's resolution.
    events = [ev(3, S2, FIRING), ev(4, S2, RESOLVED), ev(5, S3, FIRING)]
    assert resolved_since(events, S1, 0) is None
    assert resolved_since([*events, ev(6, S3, RESOLVED)], S1, 0) == 6


def test_a_refire_of_the_same_episode_resolved_is_named() -> None:
    events = [ev(2, S1, RESOLVED), ev(3, S1, FIRING, refire=1), ev(4, S1, RESOLVED, refire=1)]
    assert resolved_since(events, S1, 0) == 4


def test_the_runs_own_resolution_is_not_a_later_one() -> None:
    assert resolved_since([ev(1, S1, FIRING), ev(2, S1, RESOLVED)], S1, 0) is None
    assert resolved_since([ev(2, S1, RESOLVED)], "not a time", 0) is None
