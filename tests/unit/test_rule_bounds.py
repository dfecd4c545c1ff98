"""Durations and counts in rule files have an upper bound (a year; a million): larger ones passed
lint and then broke every admission (the guards' Lua script refused them) or overflowed a
datetime. Refused when the rules load, on the line, naming the bound."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from remediations.postgres.sessions import TerminateIdleParams
from tests.support.rules import TARGET, errors_of, one_rule


def _rule(extra: str, when: str = "") -> str:
    step = "  - action: test.restart\n" + (f"    when: {when}\n" if when else "")
    return one_rule(TARGET + "steps:\n" + step + extra)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param(
            _rule("guards: {cooldown: 99999999999999999999999w}\n"),
            7,
            "guards.cooldown: '99999999999999999999999w' is longer than 52w1d",
            id="cooldown",
        ),
        pytest.param(
            _rule("guards: {max_runs: {count: 99999999999999999999, per: 1h}}\n"),
            7,
            "guards.max_runs.count: Input should be less than or equal to 1000000",
            id="max-runs-count",
        ),
        pytest.param(
            _rule("guards: {max_runs: {count: 3, per: 53w}}\n"),
            7,
            "guards.max_runs.per: '53w' is longer than 52w1d",
            id="max-runs-per",
        ),
        pytest.param(
            _rule("", when="{repeated: {times: 2, within: 99999999999999999w}}"),
            7,
            "steps[0].when.repeated.within: '99999999999999999w' is longer than",
            id="repeated-within",
        ),
        pytest.param(
            _rule("", when="{repeated: {times: 1000001, within: 1h}}"),
            7,
            "steps[0].when.repeated.times: Input should be less than or equal to 1000000",
            id="repeated-times",
        ),
        pytest.param(
            _rule("verify: {resolved_within: 10m, settle: 400d}\n"),
            7,
            "verify.settle: '400d' is longer than 52w1d",
            id="settle",
        ),
    ],
)
def test_too_large_is_refused_on_its_line(text: str, line: int, message: str) -> None:
    errors = errors_of({"a.yaml": text})
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"a.yaml:{line}: rule 'r': ")
    assert message in errors[0]


def test_the_bounds_themselves_are_accepted() -> None:
    text = _rule(
        "guards: {cooldown: 52w1d, max_runs: {count: 1000000, per: 365d}}\n",
        when="{repeated: {times: 1000000, within: 52w1d}}",
    )
    # The first step has a `when`, so a plain first step goes before it.
    text = text.replace("steps:\n", "steps:\n      - action: test.restart\n", 1)
    assert errors_of({"a.yaml": text}) == []


def test_a_duration_in_params_is_bounded_too() -> None:
    with pytest.raises(ValidationError, match="longer than 52w1d"):
        TerminateIdleParams.model_validate({"roles": ["app"], "idle_for": "9999999w"})
    assert (
        TerminateIdleParams.model_validate({"roles": ["app"], "idle_for": "52w"}).idle_for
        == 52 * 7 * 86400
    )
