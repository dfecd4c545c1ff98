"""Times as text (receiver/timestamps.py): %Y always four digits, the time in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from receiver.timestamps import utc_strftime


def test_the_year_one_keeps_four_digits() -> None:
    # glibc's strftime wrote "1-01-01": out of ISO order, and no incident id read it back.
    at = datetime(1, 1, 1, tzinfo=UTC)
    assert utc_strftime(at, "%Y-%m-%dT%H:%M:%S") == "0001-01-01T00:00:00"
    assert utc_strftime(at, "%Y%m%dT%H%M%S%fZ") == "00010101T000000000000Z"


def test_an_aware_time_is_written_in_utc() -> None:
    at = datetime(2026, 11, 25, 12, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert utc_strftime(at, "%Y-%m-%d %H:%M:%S UTC") == "2026-11-25 10:00:05 UTC"


@given(st.datetimes(min_value=datetime(2, 1, 1), timezones=st.just(UTC)))
def test_any_year_reads_back_as_written(at: datetime) -> None:
    text = utc_strftime(at, "%Y-%m-%dT%H:%M:%S.%f")
    assert datetime.fromisoformat(text).replace(tzinfo=UTC) == at
