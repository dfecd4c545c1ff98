"""Values YAML reads that a step's params cannot hold: a `!!binary` (bytes, read as text by
pydantic), a float beyond JSON (`1.0e+999`, `!!float nan`) and an explicit `!!timestamp` date.
Each is refused at its own line; before, the first carried a NUL past the check that refuses
one, the second was posted as `Infinity`, and the last failed the load as "please report this"."""

from __future__ import annotations

import datetime
import json
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from receiver.rules.compile import compile_files
from receiver.rules.errors import RuleSetError
from remediations.http.endpoints import HttpCallParams
from remediations.json_values import not_json
from remediations.registry import default_registry
from tests.support.rules import POLICY

HEAD = """\
rules:
  - name: r
    match: ['alertname="A"']
    target: {kind: HttpEndpoint, name: hook}
    steps:
"""


def _errors(steps: str) -> list[str]:
    text = HEAD + textwrap.indent(textwrap.dedent(steps), "      ")
    with pytest.raises(RuleSetError) as caught:
        compile_files({"a.yaml": text}, default_registry(), POLICY)
    return [str(e) for e in caught.value.errors]


def test_a_binary_value_is_refused_at_its_line_naming_the_tag() -> None:
    # `YQBi` is "a\0b": taken as the text, a NUL the store cannot hold.
    errors = _errors(
        """\
        - action: notify
          params: {channel: oncall, message: !!binary YQBi}
        """
    )
    assert errors == [
        "a.yaml:7: invalid YAML: a !!binary value: a rule file holds text, numbers, true or"
        " false, lists and maps: remove the tag"
    ]


def test_a_float_beyond_json_and_a_date_in_an_http_body_are_refused_at_their_lines() -> None:
    errors = _errors(
        """\
        - action: http.call
          params:
            body:
              ok: [1.5, -3, true, null, "{{ labels.a }}"]
              big: [1, {c: 1.0e+999}]
              nan: !!float nan
              when: !!timestamp 2020-01-01
        """
    )
    prefix = "rule 'r': invalid params for http.call: "
    beyond = (
        "is no JSON number (a number beyond about 1.8e308 reads as infinity): write a smaller"
        " one, or quote it for the text"
    )
    assert errors == [
        f"a.yaml:10: {prefix}body.big[1].c: inf {beyond}",
        f"a.yaml:11: {prefix}body.nan: nan {beyond}",
        f"a.yaml:12: {prefix}body.when: a date is no JSON value (an explicit YAML tag such as"
        " !!timestamp): quote it for the text",
    ]


def test_the_http_call_model_refuses_them_too() -> None:
    for body, said in (
        ({"a": [{"c": float("inf")}]}, "at body.a[0].c: inf is no JSON number"),
        ({"d": datetime.date(2020, 1, 1)}, "at body.d: a date is no JSON value"),
    ):
        with pytest.raises(ValidationError, match=said.replace("[", r"\[").replace("]", r"\]")):
            HttpCallParams.model_validate({"body": body})


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=10,
)


@given(_JSON)
def test_what_json_writes_and_reads_back_has_no_fault(value: object) -> None:
    assert list(not_json(value)) == []
    json.loads(json.dumps(value, allow_nan=False))


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_float_is_a_fault_at_its_place(value: float) -> None:
    assert [path for path, _ in not_json({"a": [0, value]})] == [("a", 1)]
