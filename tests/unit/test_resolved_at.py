"""When a run's alert resolved (receiver/pipeline/resolve.py ``resolved_at``): its endsAt, never
later than the worker's now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from receiver.alertmanager import ZERO_TIME
from receiver.model import AlertEvent, Status
from receiver.pipeline.resolve import resolved_at

NOW = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)


def resolved(ends_at: str) -> AlertEvent:
    return AlertEvent(
        1, "0123456789abcdef", "2026-12-01T04:00:00Z", Status.RESOLVED, {}, {}, ends_at
    )


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")  # years below 1000 too


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
        timezones=st.just(UTC),
    )
)
def test_an_ends_at_that_has_passed_is_kept_and_one_still_ahead_is_now(ends: datetime) -> None:
    got = resolved_at(resolved(rfc3339(ends)), NOW)
    assert got == (ends if ends <= NOW else NOW)
    assert got <= NOW


def test_the_edges() -> None:
    assert resolved_at(resolved(ZERO_TIME), NOW) == NOW
    assert resolved_at(resolved("9999-12-31T23:59:59.999999999Z"), NOW) == NOW
    assert resolved_at(resolved("not a time"), NOW) == NOW
    assert resolved_at(resolved(rfc3339(NOW)), NOW) == NOW
    second_ago = NOW - timedelta(seconds=1)
    assert resolved_at(resolved(rfc3339(second_ago)), NOW) == second_ago
