"""Errors of a rule file and of a set of rule files: YAML and top-level mistakes, duplicate rule
names across files, and every error of every file collected at once, in file order, each with
its exact file:line."""

from __future__ import annotations

import pytest

from receiver.rules.compile import compile_files, lint_files
from receiver.rules.errors import RuleError, RuleSetError
from tests.support.rules import GOOD, POLICY, TARGET, errors_of, one_rule, registry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "rules:\n  - name: [\n",
            "a.yaml:3: invalid YAML: while parsing a flow node: "
            "expected the node content, but found '<stream end>'",
            id="bad-yaml",
        ),
        pytest.param(
            "rules: []\n---\nrules: []\n",
            "a.yaml:2: invalid YAML: expected a single document in the stream: "
            "but found another document",
            id="two-documents",
        ),
        pytest.param(
            "", "a.yaml:1: file is empty; expected a mapping with a `rules` list", id="empty"
        ),
        pytest.param(
            "- a\n",
            "a.yaml:1: expected a mapping with a `rules` list at the top of the file",
            id="top-list",
        ),
        pytest.param("rules: []\n", "a.yaml:1: `rules` must be a non-empty list", id="no-rules"),
        pytest.param(
            "rules:\n  - just a string\n",
            "a.yaml:2: each item of `rules` must be a mapping with name, match, target, steps",
            id="rule-not-mapping",
        ),
        pytest.param(
            "rules:\n  - name: r\n    name: s\n",
            "a.yaml:3: duplicate key 'name' (first at line 2)",
            id="duplicate-key",
        ),
        pytest.param(
            "rules:\n  - name: r\n    on: x\n",
            'a.yaml:3: keys must be strings: write "on" in quotes: YAML reads it as a boolean',
            id="yaml-1.1-boolean-key",
        ),
        # These four said "keys must be strings, not None".
        pytest.param(
            "rules:\n  - name: r\n    [a]: x\n",
            "a.yaml:3: keys must be strings, not a list (a `[...]` or `? - ...` key): "
            "write the key as text",
            id="list-key",
        ),
        pytest.param(
            "rules:\n  - name: r\n    ? {a: 1}\n    : x\n",
            "a.yaml:3: keys must be strings, not a mapping (a `{...}` or `? a: b` key): "
            "write the key as text",
            id="mapping-key",
        ),
        pytest.param(
            "rules:\n  - name: r\n    ~: x\n",
            'a.yaml:3: keys must be strings: write "~" in quotes: YAML reads it as null',
            id="null-key",
        ),
        pytest.param(
            "rules:\n  - name: r\n    ?\n    : x\n",
            "a.yaml:3: a key is missing: a `:` or `?` with nothing before it",
            id="empty-key",
        ),
    ],
)
def test_file_level_errors(text: str, expected: str) -> None:
    assert errors_of({"a.yaml": text})[0] == expected


def test_unknown_top_level_key() -> None:
    assert errors_of({"a.yaml": "rule:\n  - x\n"}) == [
        "a.yaml:1: unknown top-level key 'rule' (did you mean 'rules'?); only `rules` is allowed",
        "a.yaml:1: missing `rules` list",
    ]


def test_duplicate_rule_names_across_files() -> None:
    second = "# another file\n" + GOOD
    assert errors_of({"a.yaml": GOOD, "b.yaml": second}) == [
        "b.yaml:3: duplicate rule name 'restart-on-high-memory'; first defined at a.yaml:2"
    ]


def test_duplicate_reported_even_when_the_duplicate_has_other_errors() -> None:
    second = GOOD.replace("test.restart", "test.nope")
    assert errors_of({"a.yaml": GOOD, "b.yaml": second}) == [
        "b.yaml:2: duplicate rule name 'restart-on-high-memory'; first defined at a.yaml:2",
        "b.yaml:7: rule 'restart-on-high-memory': steps[0].action: unknown action 'test.nope'; "
        "known actions: test.grow, test.restart, test.scale, test.undo, test.vacuum",
    ]


def test_all_errors_of_all_files_are_collected_in_file_order() -> None:
    bad_b = one_rule(TARGET + "steps: [{action: test.nope}]\nguards: {cooldown: soon}\n")
    bad_c = "rules:\n  - name: [\n"
    errors = lint_files({"c.yaml": bad_c, "a.yaml": GOOD, "b.yaml": bad_b}, registry(), POLICY)
    assert [(e.file, e.line) for e in errors] == [("b.yaml", 5), ("b.yaml", 6), ("c.yaml", 3)]
    with pytest.raises(RuleSetError) as caught:
        compile_files({"c.yaml": bad_c, "a.yaml": GOOD, "b.yaml": bad_b}, registry(), POLICY)
    assert caught.value.errors == errors
    assert str(caught.value).splitlines() == [str(e) for e in errors]


def test_schema_errors_of_one_rule_do_not_hide_other_rules() -> None:
    text = GOOD + GOOD.removeprefix("rules:\n").replace("restart-on-high-memory", "second")
    text += "  - name: third\n    match: []\n"
    errors = errors_of({"a.yaml": text})
    # Only the third rule is reported; the two good ones above it still compile.
    assert errors == [
        "a.yaml:32: rule 'third': missing required field 'target'",
        "a.yaml:32: rule 'third': missing required field 'steps'",
        "a.yaml:33: rule 'third': match must list at least one matcher; an empty list would "
        "match every alert",
    ]


def test_rule_error_str() -> None:
    assert str(RuleError("rules/a.yaml", 3, "boom")) == "rules/a.yaml:3: boom"
    assert str(RuleError("rules", 0, "no files")) == "rules: no files"


def test_compile_files_needs_files() -> None:
    with pytest.raises(RuleSetError, match="no rule files given"):
        compile_files({}, registry(), POLICY)
