"""A rule file's numbers, dates and words are read as a reader of the file reads them.

PyYAML's SafeLoader reads YAML 1.1: ``017`` was fifteen, ``0x10`` sixteen, ``1:30`` ninety,
``9_096`` 9096 and ``2024-01-01`` a date, so ``cooldown: 1:30`` was told of "90", a label
value ``017`` was never the text ``017``, and ``max_runs: {count: 0x10}`` was silently 16.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from receiver.rules.compile import compile_files
from receiver.rules.errors import RuleSetError
from receiver.rules.model import Rule
from receiver.rules.yaml_lines import Located, parse_yaml
from receiver.ruletest.parse import parse_test_file
from receiver.ruletest.spec import RolloutFact, SettingsSpec
from remediations.registry import default_registry
from tests.support.rules import POLICY


def _value(scalar: str) -> Any:
    located = Located("a.yaml")
    data = parse_yaml(f"k: {scalar}\n", located)
    assert not located.errors
    return data["k"]


@pytest.mark.parametrize(
    ("scalar", "value"),
    [
        ("017", "017"),  # YAML 1.1: 15 (octal)
        ("0o17", "0o17"),
        ("0x10", "0x10"),  # 16
        ("0b11", "0b11"),  # 3
        ("9_096", "9_096"),  # 9096
        ("+5", "+5"),  # 5
        ("-0", "-0"),  # 0
        ("1:30", "1:30"),  # 90 (sexagesimal)
        ("1:30.5", "1:30.5"),  # 90.5
        ("2024-01-01", "2024-01-01"),  # a date
        ("2024-01-01T09:00:00Z", "2024-01-01T09:00:00Z"),  # a datetime
        (".5", ".5"),
        ("1.", "1."),
        ("01.5", "01.5"),
        (".inf", ".inf"),
        (".nan", ".nan"),
        ("1_0.5", "1_0.5"),
        ("1.5e3", "1.5e3"),  # text in YAML 1.1 too (its exponent needs a sign)
        ("0", 0),
        ("17", 17),
        ("-3", -3),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        ("1.0e+3", 1000.0),
        ("!!int 017", 17),  # tagged: read in decimal
        ("!!int 0x10", "0x10"),
        ("true", True),
        ("no", False),  # a boolean still; where text is meant, told to quote it
    ],
)
def test_a_plain_scalar_is_a_number_only_as_a_reader_reads_one(scalar: str, value: Any) -> None:
    read = _value(scalar)
    assert (type(read), read) == (type(value), value)


_SCALAR = st.text(alphabet="0123456789-+._:xobeE eTZ", min_size=1, max_size=12).map(str.strip)


@given(_SCALAR.filter(bool))
@example("017")  # YAML 1.1: 15
@example("0x10")
@example("1:30")
@example("2024-01-01")
def test_what_was_text_stays_text_and_a_number_is_yaml_s_or_the_text(scalar: str) -> None:
    try:
        old = yaml.safe_load(f"k: {scalar}\n")["k"]
    except (yaml.YAMLError, ValueError, TypeError, AttributeError):
        return  # not a plain scalar PyYAML reads (`k: -`): nothing to compare
    located = Located("a.yaml")
    data = parse_yaml(f"k: {scalar}\n", located)
    if located.errors or not isinstance(data, dict):
        return
    new = data["k"]
    # Either YAML 1.1's value unchanged, or the text as written; never a third value.
    assert (type(new), new) == (type(old), old) or new == scalar
    if isinstance(old, str):
        assert new == old
    if isinstance(new, int) and not isinstance(new, bool):
        assert str(new) == scalar  # a whole number prints as it was written


def _rule(
    extra: str = "",
    step: str = "{action: kubernetes.rollout_restart}",
    target: str = "{kind: Deployment, namespace: ns, name: api}",
) -> str:
    return textwrap.dedent(
        f"""\
        rules:
          - name: r
            match: ['alertname="A"']
            target: {target}
            steps: [{step}]
        """
    ) + textwrap.indent(extra, "    ")


def _compiled(text: str) -> Rule:
    return compile_files({"a.yaml": text}, default_registry(), POLICY).rules[0]


def _errors(text: str) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        compile_files({"a.yaml": text}, default_registry(), POLICY)
    return [str(e) for e in caught.value.errors]


def test_a_sexagesimal_cooldown_is_no_duration_and_is_quoted_as_written() -> None:
    # Was: "guards.cooldown: 90 is not a duration: a number needs a unit, e.g. 90s or 90m".
    assert _errors(_rule("guards: {cooldown: 1:30}\n")) == [
        "a.yaml:6: rule 'r': guards.cooldown: '1:30' is not a duration; expected a duration"
        " like 30s, 15m, 1h30m or 2d (units w, d, h, m, s, ms, largest first)"
    ]


@pytest.mark.parametrize("count", ["0x10", "9_096", "0o17", "+5", "1:30"])
def test_a_count_yaml_1_1_read_as_another_number_is_refused(count: str) -> None:
    # Was: max_runs of 16, 9096, 15, 5 and 90, without a word.
    assert _errors(_rule(f"guards: {{max_runs: {{count: {count}, per: 1h}}}}\n")) == [
        f"a.yaml:6: rule 'r': guards.max_runs.count: '{count}' is not an integer: write it"
        " with the digits 0-9 alone (no `_`, `+`, fraction or exponent)"
    ]


def test_a_leading_zero_count_is_read_in_decimal() -> None:
    # Was 15 (octal). Decimal, as the settings, the command line and Prometheus read it.
    rule = _compiled(_rule("guards: {max_runs: {count: 017, per: 1h}}\n"))
    assert rule.max_runs == 17
    step = "{action: kubernetes.rollout_restart}, {action: kubernetes.rollout_restart, "
    rule = _compiled(_rule(step=step + "when: {repeated: {times: 010, within: 1h}}}"))
    repeated = rule.steps[1].repeated
    assert repeated is not None
    assert repeated.times == 10


def test_text_params_keep_the_text_as_written() -> None:
    # Was: "value: Input should be a valid string" (15), and a date for the target's name.
    step = "{action: kubernetes.set_env, params: {container: app, name: X, value: 017}}"
    rule = _compiled(_rule(step=step).replace("name: api", "name: 2024-01-01"))
    assert rule.steps[0].params["value"] == "017"
    assert rule.target_name.source == "2024-01-01"


def test_a_number_where_text_is_meant_is_told_to_be_quoted() -> None:
    step = (
        "{action: kubernetes.set_resources,"
        " params: {container: app, cpu_limit: {factor: 1.5, max: 2}}}"
    )
    assert _errors(_rule(step=step)) == [
        "a.yaml:5: rule 'r': invalid params for kubernetes.set_resources: cpu_limit.max:"
        ' write "2" in quotes: YAML reads 2 as a number'
    ]


@pytest.mark.parametrize(("key", "kind"), [("on", "a boolean"), ("5", "a number")])
def test_a_key_yaml_reads_as_no_text_is_named_as_written(key: str, kind: str) -> None:
    # Was: "keys must be strings, not True" of `on:`.
    assert _errors(_rule(f"{key}: x\n"))[0] == (
        f'a.yaml:6: keys must be strings: write "{key}" in quotes: YAML reads it as {kind}'
    )


def test_a_rule_test_s_label_keeps_its_text() -> None:
    # Was: "labels.code: Input should be a valid string" (15).
    spec, located = parse_test_file(
        "t.yaml",
        "rule_files: [a.yaml]\ntests:\n  - name: t\n    alerts:\n"
        "      a: {labels: {alertname: A, code: 017}}\n    timeline: [{at: 0s, firing: a}]\n"
        "    expect: [{at: 0s, runs: []}]\n",
    )
    assert not located.errors
    assert spec is not None
    assert spec.tests[0].alerts["a"].labels["code"] == "017"


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        # YAML 1.1 read these as dates; text now, they were told "... is not a duration".
        ("2026-01-01 09:00:00Z", "not an RFC 3339 timestamp: '2026-01-01 09:00:00Z'"),
        ("2026-1-1T09:00:00Z", "not an RFC 3339 timestamp: '2026-1-1T09:00:00Z'"),
    ],
)
def test_a_rule_test_s_time_that_is_no_rfc_3339_one_is_told_so(written: str, problem: str) -> None:
    located = Located("t.yaml")
    data = parse_yaml(f"revision: 2\ncreated_at: {written}\n", located)
    with pytest.raises(ValidationError) as caught:
        RolloutFact.model_validate(data)
    assert problem in str(caught.value)


def test_a_rule_test_s_plain_time_is_kept_as_written() -> None:
    # Was a datetime, written back in UTC (`2026-01-01T08:00:00.500000Z`); a lower-case `t`
    # was no time at all.
    for written in ("2026-01-01T09:00:00.5+01:00", "2026-01-01t09:00:00z"):
        data = parse_yaml(f"revision: 2\ncreated_at: {written}\n", Located("t.yaml"))
        assert RolloutFact.model_validate(data).created_at == written


@pytest.mark.parametrize("written", ["1_0", "0x10", "+5"])
def test_a_rule_test_s_count_is_written_in_the_digits_0_9(written: str) -> None:
    # Was 10, an error and 5: the settings' counts were pydantic's lax int, which takes `_`.
    data = parse_yaml(f"budget: {{count: {written}}}\n", Located("t.yaml"))
    with pytest.raises(ValidationError, match="is not an integer: write it with the digits 0-9"):
        SettingsSpec.model_validate(data)


HOOK = "{kind: HttpEndpoint, name: hook}"


def test_a_yaml_1_1_number_in_an_http_body_is_refused_not_sent_as_text() -> None:
    # Was: the body sent {"ratio": ".5", "count": "017", "x": "+5", "l": ["1_000"]} where it
    # sent 0.5, 15, 5 and [1000] the day before, the rule loading without a word.
    step = textwrap.dedent(
        """\
        - action: http.call
          params:
            body:
              ratio: .5
              count: 017
              nested: {x: +5, ok: 1.5, text: "017"}
              l: [1_000]
        """
    )
    text = _rule(step="", target=HOOK).replace(
        "steps: []", "steps:\n" + textwrap.indent(step, "      ")
    )
    prefix = "rule 'r': invalid params for http.call: "
    assert _errors(text) == [
        f"a.yaml:{line}: {prefix}body.{where}: YAML 1.1 read {written} as the number {was} and"
        f' a rule file reads it as the text "{written}": quote it for the text, or write the'
        " number as digits without a leading zero, `+` or `_` (0.5, not .5)"
        for line, where, written, was in (
            (9, "ratio", ".5", "0.5"),
            (10, "count", "017", "15"),
            (11, "nested.x", "+5", "5"),
            (12, "l[0]", "1_000", "1000"),
        )
    ]


def test_an_http_body_s_quoted_and_decimal_numbers_load_as_written() -> None:
    step = "{action: http.call, params: {body: {a: 0.5, b: 17, c: '017', d: -3, e: '.5'}}}"
    assert _compiled(_rule(step=step, target=HOOK)).steps[0].params["body"] == {
        "a": 0.5,
        "b": 17,
        "c": "017",
        "d": -3,
        "e": ".5",
    }
