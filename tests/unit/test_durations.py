"""Durations as people write them in rule files and settings: 30s, 15m, 1h30m, 500ms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("500ms", 0.5),
        ("1m30s", 90),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", " ", "30", "1.5h", "1m1h", "h", "1s1s", "-1m", "1 h", "1H"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration; expected a duration like 30s"):
        parse_duration(text)


def test_parse_duration_rejects_a_bare_number() -> None:
    # YAML reads `cooldown: 60` as an int: seconds or minutes? Refuse rather than guess.
    with pytest.raises(ValueError, match="60 is not a duration"):
        parse_duration(60)


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_round_trips(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
