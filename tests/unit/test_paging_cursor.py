"""The run list's cursor: what ``encode_cursor`` issues decodes back, and any other text is a
``BadCursor`` (never a value the store cannot bind, nor another exception)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.store.paging import BadCursor, decode_cursor, encode_cursor
from tests.support.cursors import CRAFTED, RUN, cursor_of


def _valid(created_at: datetime, run_id: str) -> None:
    """What the store may be handed: an aware moment in UTC and a canonical uuid."""
    assert created_at.tzinfo is not None
    assert created_at.utcoffset() == timedelta(0)
    assert str(UUID(run_id)) == run_id


@pytest.mark.parametrize(
    "raw",
    [
        *CRAFTED,
        f"2026-12-01|{RUN}",
        f"|{RUN}",
        "no bar at all",
    ],
)
def test_a_crafted_cursor_is_refused(raw: str) -> None:
    with pytest.raises(BadCursor, match="pass the next_cursor of a previous page"):
        decode_cursor(cursor_of(raw))


@pytest.mark.parametrize("text", ["", "!!garbage", "a b", "YWJj=", "é", "\x00", "/+"])
def test_text_that_is_no_url_safe_base64_is_refused(text: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(text)


def test_an_id_in_another_spelling_is_handed_on_canonical() -> None:
    # UUID() takes braces and full-width digits; PostgreSQL's uuid does not.
    created_at, run_id = decode_cursor(cursor_of(f"2026-12-01T16:40:44+01:00|{{{RUN}}}"))
    assert run_id == RUN
    assert created_at == datetime(2026, 12, 1, 15, 40, 44, tzinfo=UTC)
    _valid(created_at, run_id)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone.max]),
    ),
    st.uuids(),
)
def test_what_is_issued_decodes_back(created_at: datetime, run_id: UUID) -> None:
    decoded = decode_cursor(encode_cursor(created_at, str(run_id)))
    assert decoded == (created_at, str(run_id))
    _valid(*decoded)


@given(
    st.one_of(
        st.text(),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        st.text().map(cursor_of),
        st.tuples(st.text(), st.text()).map(lambda p: cursor_of(f"{p[0]}|{p[1]}")),
        st.tuples(st.datetimes(), st.sampled_from(["", "Z", "+23:59", "-23:59"]), st.uuids()).map(
            lambda p: cursor_of(f"{p[0].isoformat()}{p[1]}|{p[2]}")
        ),
    )
)
def test_any_text_decodes_to_a_valid_cursor_or_is_a_bad_cursor(text: str) -> None:
    try:
        decoded = decode_cursor(text)
    except BadCursor:
        return
    _valid(*decoded)
