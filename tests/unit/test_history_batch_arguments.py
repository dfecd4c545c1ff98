"""batch_arguments: the parameters of a batch of history reads, each read's pairs a slice of
the batch's arrays between its bounds (PostgreSQL's ``array[lo:hi]``: 1-based, inclusive)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from receiver.model import AlertEvent, Status, Target
from receiver.store.history_sql import batch_arguments, history_arguments

_names = st.text("abc", min_size=1, max_size=3)
_pairs = st.lists(
    st.tuples(_names, st.builds(Target, st.just("Deployment"), _names, _names)), max_size=4
)


@st.composite
def _reads(draw: st.DrawFn) -> tuple[Any, ...]:
    event = AlertEvent(
        id=draw(st.integers(1, 2**62)),
        fingerprint=draw(_names),
        starts_at="2026-01-01T00:00:00Z",
        status=Status.FIRING,
        labels={},
        annotations={},
        refire=draw(st.integers(0, 3)),
        received_at=draw(st.none() | st.just(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))),
    )
    return history_arguments(
        event,
        draw(st.floats(0, 1e6)),
        draw(_pairs),
        draw(_pairs),
        draw(st.integers(1, 1000)),
        draw(st.none() | st.integers(0, 1000)),
    )


def _slice(array: list[str], lo: int, hi: int) -> list[str]:
    """``array[lo:hi]`` as PostgreSQL reads it: empty when hi < lo."""
    return array[lo - 1 : hi] if hi >= lo else []


@given(st.lists(_reads(), min_size=1, max_size=32))
def test_each_read_finds_its_own_values_and_pairs_in_the_batchs(reads: list[Any]) -> None:
    batch = batch_arguments(reads)
    assert len(batch) == 20
    for i, read in enumerate(reads):
        assert [batch[n][i] for n in range(5)] == list(read[:5])
        # The repeat pairs ($6-$9 between $10 and $11), the settle pairs ($12-$15, $16, $17).
        for own, arrays, bounds in ((5, 5, 9), (9, 11, 15)):
            lo, hi = batch[bounds][i], batch[bounds + 1][i]
            sliced = [_slice(a, lo, hi) for a in batch[arrays : arrays + 4]]
            assert sliced == list(read[own : own + 4])
        assert batch[17][i] == read[13]
        # $19 the event's id, $20 the pair's limit (the read's own when none is given).
        assert batch[18][i] == read[14]
        assert batch[19][i] == read[15]
