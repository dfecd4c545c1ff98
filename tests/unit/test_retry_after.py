"""Reading a ``Retry-After`` answer (remediations/http/post.py, ``parse_retry_after``): seconds
or an HTTP date, and anything else no delay, never an error out of the call. Pure: the
channels and endpoints that send such answers are tests/integration/test_http_actions.py and
test_approval_notice_channel.py."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from remediations.http.post import parse_retry_after

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
# The pieces of an HTTP date and of its obsolete forms, and numbers no calendar holds.
PIECES = st.sampled_from(
    ["Mon,", "Sunday,", "01", "06-Nov-94", "Jan", "Nov", "1994", "2025", "99999999999",
     "99999999999999999999", "08:49:37", "GMT", "+2359", "-0800", ":", ","]
)  # fmt: skip


def test_seconds_and_dates_are_read() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("Tue, 31 Dec 2024 12:00:00 GMT", NOW) == 0.0  # past: at once


def test_a_date_whose_year_no_calendar_holds_is_no_delay() -> None:
    # It raised OverflowError out of the POST: an approval's notice failed the pass that
    # asked for the approval, an http.call step crashed.
    assert parse_retry_after("Mon, 01 Jan 99999999999 00:00:00 GMT", NOW) is None


@given(st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=8).map(" ".join)))
def test_any_header_is_seconds_or_no_delay(value: str) -> None:
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or seconds >= 0
