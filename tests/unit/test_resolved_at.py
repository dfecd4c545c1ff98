"""When a run's alert resolved, as it says (receiver/pipeline/resolve.py ``resolved_at``): its
endsAt, or None when it gives none. The store dates one far ahead when it is stored (tested in
tests/integration/test_pipeline_resolution.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from receiver.alertmanager import ZERO_TIME
from receiver.model import AlertEvent, Status
from receiver.pipeline.resolve import resolved_at


def resolved(ends_at: str) -> AlertEvent:
    return AlertEvent(
        1, "0123456789abcdef", "2026-12-01T04:00:00Z", Status.RESOLVED, {}, {}, ends_at
    )


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
        timezones=st.just(UTC),
    )
)
def test_an_ends_at_is_read_as_it_is_sent(ends: datetime) -> None:
    # isoformat writes years below 1000 with four digits, as RFC 3339 needs.
    assert resolved_at(resolved(ends.isoformat(timespec="microseconds"))) == ends


def test_go_zero_time_and_an_unreadable_value_say_nothing() -> None:
    assert resolved_at(resolved(ZERO_TIME)) is None
    assert resolved_at(resolved("not a time")) is None
    assert resolved_at(resolved("9999-12-31T23:59:59.999999999Z")) == datetime.max.replace(
        tzinfo=UTC
    )
