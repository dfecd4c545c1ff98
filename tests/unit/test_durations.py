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


@pytest.mark.parametrize(
    "text", ["", " ", "1.5h", "1m1h", "h", "1s1s", "1 h", "1H", "nan", "1\uff48"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration; expected a duration like 30s"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "example"),
    [
        (60, "60s or 60m"),
        ("60", "60s or 60m"),
        (1.5, "30s or 30m"),
        ("1e3", "30s or 30m"),
        ("1_0", "30s or 30m"),
        ("0.0001", "30s or 30m"),
    ],
)
def test_parse_duration_rejects_a_number_without_a_unit(value: object, example: str) -> None:
    # YAML reads `cooldown: 60` as an int: seconds or minutes? Refuse rather than guess.
    with pytest.raises(ValueError, match="needs a unit") as caught:
        parse_duration(value)
    assert str(caught.value) == (
        f"{value!r} is not a duration: a number needs a unit, e.g. {example} "
        "(units w, d, h, m, s, ms, largest first)"
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        # Python's \d takes every script's digits; Prometheus' [0-9] does not.
        ("\u0663h", "write its digits as ASCII 0-9"),  # ARABIC-INDIC DIGIT THREE
        ("\uff11h", "write its digits as ASCII 0-9"),  # FULLWIDTH DIGIT ONE
        ("1h\u0663m", "write its digits as ASCII 0-9"),
        # Prometheus refuses blanks around a duration; a YAML plain scalar is stripped already,
        # so only a quoted one (or an API's or the CLI's text) reaches this.
        (" 1h ", "remove the blanks around it"),
        ("1h\n", "remove the blanks around it"),
        ("-1m", "a duration cannot be negative"),
    ],
)
def test_parse_duration_says_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as caught:
        parse_duration(text)
    assert str(caught.value).startswith(f"{text!r} is not a duration: {why}; expected")


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_round_trips(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["\u0663s", "\uff11s", float("nan"), float("inf"), -1, "1_0", "1e3", 10, "2.5"]
)
def test_a_number_without_its_unit_or_ascii_digits_is_no_duration(value: object) -> None:
    with pytest.raises(ValueError, match=r"duration|unit|ASCII"):
        parse_duration(value)


@pytest.mark.parametrize(
    "text",
    ["9" * 5000, "9" * 5000 + "x", "x" * 5000, "-" + "1" * 5000 + "s", " " + "1" * 5000 + "s "],
)
def test_a_long_refused_duration_is_quoted_cut(text: str) -> None:
    # A pasted file or a runaway number: the message names its start, not all of it.
    with pytest.raises(ValueError, match="is not a duration") as refused:
        parse_duration(text)
    message = str(refused.value)
    assert repr(text[:80] + "…") in message
    assert len(message) < 300


@given(st.text(max_size=80).filter(lambda text: not text.isascii() or not text.isalnum()))
def test_a_short_refused_value_is_quoted_whole(text: str) -> None:
    # No ASCII letters and digits alone: such text may be a duration (30s); any other is not.
    with pytest.raises(ValueError, match="is not a duration") as refused:
        parse_duration(text)
    assert str(refused.value).startswith(repr(text))


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_number_that_is_not_finite_is_no_duration_and_not_quoted_as_inf(value: float) -> None:
    # JSON's 1e999 reads as infinity: "inf is not a duration" quoted what nobody wrote.
    with pytest.raises(ValueError, match=r"^a number too large to hold, or not a number, is no"):
        parse_duration(value)
    with pytest.raises(ValueError, match=r"^(?!.*(inf|nan))"):
        parse_duration(value)
