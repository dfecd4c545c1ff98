"""Whether an alert fires again after a run's occurrence (receiver.episodes.fires_again).

The approve stage asks it before an approved on_resolved step acts: an approval given moments
before the alert fired again is no longer pending, so the firing does not withdraw it, and the
undo would take the remediation back during the new episode.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from receiver.episodes import Occurrence, fires_again
from receiver.model import Status

S1 = "2024-05-01T11:00:00.5Z"
S2 = "2024-05-01T11:20:00.123456789Z"
S3 = "2024-05-01T13:40:00+02:00"  # 11:40Z: later than S2, though it reads earlier as text
FIRING, RESOLVED = Status.FIRING, Status.RESOLVED


def ev(id: int, starts_at: str, status: Status, refire: int = 0) -> Occurrence:
    return Occurrence(id, starts_at, refire, status)


def test_a_later_episode_that_fires_is_a_firing_again() -> None:
    events = [ev(1, S1, FIRING), ev(2, S1, RESOLVED), ev(3, S2, FIRING)]
    assert fires_again(events, S1, 0) == 3


def test_a_refire_of_the_same_episode_is_a_firing_again() -> None:
    events = [ev(1, S1, FIRING), ev(2, S1, RESOLVED), ev(3, S1, FIRING, refire=1)]
    assert fires_again(events, S1, 0) == 3


def test_the_resolution_of_the_latest_occurrence_means_quiet() -> None:
    # A carried undo: the run's episode S1, closed when S2 fired, carried when S2 resolved.
    events = [ev(1, S1, FIRING), ev(3, S2, FIRING), ev(4, S2, RESOLVED)]
    assert fires_again(events, S1, 0) is None


def test_its_own_occurrence_firing_is_not_a_firing_again() -> None:
    # A firing copy of the run's own occurrence (stored before its resolution, or a late one).
    assert fires_again([ev(1, S1, FIRING), ev(2, S1, RESOLVED)], S1, 0) is None
    assert fires_again([ev(2, S1, RESOLVED), ev(5, S1, FIRING)], S1, 0) is None


def test_a_late_firing_of_an_older_episode_is_not_the_latest() -> None:
    events = [ev(3, S2, FIRING), ev(4, S2, RESOLVED), ev(9, S1, FIRING)]
    assert fires_again(events, S2, 0) is None


def test_start_times_compare_as_times_not_as_text() -> None:
    events = [ev(3, S2, FIRING), ev(4, S2, RESOLVED), ev(5, S3, FIRING)]
    assert fires_again(events, S2, 0) == 5


def test_unreadable_start_times_are_left_out() -> None:
    assert fires_again([ev(3, "yesterday", FIRING)], S1, 0) is None
    assert fires_again([ev(3, S2, FIRING)], "yesterday", 0) is None


BASE = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)


def _text(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


occurrences = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 2), st.sampled_from([FIRING, RESOLVED])),
    max_size=12,
)


@given(occurrences, st.integers(0, 5), st.integers(0, 2))
def test_fires_again_iff_the_latest_later_occurrence_fired_unresolved(
    raw: list[tuple[int, int, Status]], own_minutes: int, own_refire: int
) -> None:
    events = [ev(i + 1, _text(m), s, r) for i, (m, r, s) in enumerate(raw)]
    found = fires_again(reversed(events), _text(own_minutes), own_refire)
    keys = {(m, r) for m, r, _ in raw}
    latest = max(keys, default=None)
    fired = {(m, r) for m, r, s in raw if s is FIRING}
    resolved = {(m, r) for m, r, s in raw if s is RESOLVED}
    expected = (
        latest is not None
        and latest > (own_minutes, own_refire)
        and latest in fired
        and latest not in resolved
    )
    assert (found is not None) == expected
    if found is not None and latest is not None:
        # The newest stored firing of that occurrence, whatever order the events come in.
        ids = [i + 1 for i, (m, r, s) in enumerate(raw) if (m, r) == latest and s is FIRING]
        assert found == max(ids)
