"""Where a service row is placed in the review (``notes.service_span``, pure): when what it
records happened, never a time that cannot be read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from receiver.review.model import AuditEntry
from receiver.review.notes import service_span

WRITTEN = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)
times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


def row(kind: str, **data: object) -> AuditEntry:
    return AuditEntry(1, WRITTEN, kind, data)


@given(times)
def test_a_row_recorded_late_is_placed_when_it_happened(occurred: datetime) -> None:
    late = row("guards.pause", recorded_late=True, occurred_at=occurred.isoformat())
    assert service_span(late) == (occurred, occurred)


@given(times, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1)))
def test_a_digest_is_placed_over_its_window(start: datetime, length: timedelta) -> None:
    end = start + length
    digest = row(
        "announcements.digest",
        start=start.isoformat().replace("+00:00", "Z"),
        end=end.isoformat().replace("+00:00", "Z"),
    )
    assert service_span(digest) == (start, end)


def test_a_time_that_cannot_be_read_places_the_row_when_it_was_written() -> None:
    for bad in (
        row("guards.pause", recorded_late=True, occurred_at="yesterday"),
        row("guards.pause", recorded_late=True, occurred_at="2031-05-04T11:00:00"),  # no offset
        row("guards.resume", recorded_late=True),
        row("announcements.digest", start="2031-05-04T11:00:00Z", end="2031-05-04T10:00:00Z"),
        row("announcements.digest", start="2031-05-04T11:00:00Z"),
        row("rules.reloaded", occurred_at="2031-05-04T11:00:00+00:00"),  # not recorded late
    ):
        assert service_span(bad) == (WRITTEN, WRITTEN), bad
