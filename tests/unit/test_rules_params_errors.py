"""Errors in the params of a rule's steps (the shipped actions' own models) and in YAML 1.1 words
read as booleans, each at its exact file:line, none hiding another."""

from __future__ import annotations

import textwrap

from receiver.rules.compile import lint_files
from receiver.rules.errors import RuleError
from remediations.registry import default_registry
from tests.support.rules import POLICY, TARGET, errors_of, one_rule


def test_a_quoted_flag_in_a_rule_file_is_an_error_on_its_line() -> None:
    # The shipped kubernetes.scale: `restore: "yes"` is YAML text, and was read as true.
    text = one_rule(
        TARGET + "steps: [{action: kubernetes.rollout_restart}]\non_resolved:\n"
        '  - action: kubernetes.scale\n    params:\n      restore: "yes"\n      max: 5\n'
    )
    assert lint_files({"a.yaml": text}, default_registry(), POLICY) == [
        RuleError(
            "a.yaml",
            9,
            "rule 'r': invalid params for kubernetes.scale: restore: 'yes' is text, not a "
            "boolean: write true or false, unquoted",
        )
    ]


def test_a_schema_error_does_not_hide_the_params_of_the_rules_other_steps() -> None:
    # Each of these took one lint per error: the schema's refusal (a duration without its
    # unit, a regex that does not parse) stopped the rule before any step's params were read.
    text = "rules:\n  - name: r\n    match: ['alertname=~\"(\"']\n" + textwrap.indent(
        TARGET
        + "guards: {cooldown: 15}\n"
        + "steps:\n"
        + "  - action: kubernetes.scale\n    params: {delta: 99999}\n"
        + "  - action: kubernetes.rollout_restart\n    when: {rolled_out_within: 30}\n"
        + "on_resolved:\n"
        + "  - action: kubernetes.scale\n    params: {restore: 'true', max: 5}\n",
        "    ",
    )
    errors = lint_files({"a.yaml": text}, default_registry(), POLICY)
    assert [e.line for e in errors] == sorted(e.line for e in errors)
    said = [e.message.removeprefix("rule 'r': ") for e in errors]
    assert [m.split(":")[0] for m in said if not m.startswith("invalid params")] == [
        "match[0]",
        "guards.cooldown",
        "steps[1].when.rolled_out_within",
    ]
    params = [m for m in said if m.startswith("invalid params for kubernetes.scale")]
    assert len(params) == 3, said
    assert any("delta: Input should be less than or equal to 1000" in m for m in params)
    assert any("max: Field required" in m for m in params)
    assert any("restore: 'true' is text, not a boolean" in m for m in params)
    # A step the schema refused is said once, by the schema: its params are not read again.
    assert sum("steps[1]" in e.message for e in errors) == 1


def test_every_step_waiting_for_a_repetition_does_not_hide_other_errors() -> None:
    text = one_rule(
        TARGET
        + "steps:\n  - action: kubernetes.scale\n    params: {delta: 1}\n"
        + "    when: {repeated: {times: 2, within: 1h}}\n"
    )
    messages = [e.message for e in lint_files({"a.yaml": text}, default_registry(), POLICY)]
    assert any("every step waits for a repetition" in m for m in messages)
    assert any("max: Field required" in m for m in messages)


def test_an_unknown_nested_param_of_a_shipped_action_is_told_the_one_it_is_a_typo_of() -> None:
    # The shipped kubernetes.set_resources: a typo inside memory_limit, and a key of its own.
    text = (
        "rules:\n  - name: r\n    match: ['alertname=\"X\"']\n"
        "    target: {kind: Deployment, namespace: ns, name: x}\n    steps:\n"
        "      - action: kubernetes.set_resources\n"
        "        params: {container: app, memory_limit: {factr: 1.5}, cpu_limits: {value: '1'}}\n"
    )
    errors = lint_files({"a.yaml": text}, default_registry(), POLICY)
    assert [str(e) for e in errors] == [
        "a.yaml:7: rule 'r': invalid params for kubernetes.set_resources: memory_limit: unknown"
        " param 'factr' (did you mean 'factor'?)",
        "a.yaml:7: rule 'r': invalid params for kubernetes.set_resources: unknown param"
        " 'cpu_limits' (did you mean 'cpu_limit'?)",
    ]


def test_a_word_yaml_reads_as_a_boolean_is_told_to_be_quoted() -> None:
    # YAML 1.1 reads on, off, yes and no as booleans: `name: on` was "name: Input should be a
    # valid string", and `approval: no` listed the words it takes.
    text = (
        "rules:\n  - name: on\n    match: ['a=\"b\"']\n    " + TARGET + "    steps:\n"
        "      - action: test.restart\n        approval: No\n"
    )
    assert errors_of({"a.yaml": text}) == [
        'a.yaml:2: name: write "on" in quotes: YAML reads on as true',
        'a.yaml:7: steps[0].approval: write "No" in quotes: YAML reads No as false',
    ]


def test_a_param_yaml_reads_as_a_boolean_is_told_to_be_quoted() -> None:
    text = one_rule(
        "target: {kind: Deployment, namespace: shop, name: web}\n"
        "steps:\n"
        "  - action: kubernetes.set_env\n"
        "    params: {container: app, name: VERBOSE, value: yes}\n"
        "    approval: never\n"
    )
    assert [str(e) for e in lint_files({"a.yaml": text}, default_registry(), POLICY)] == [
        "a.yaml:7: rule 'r': invalid params for kubernetes.set_env: value: write \"yes\" in"
        " quotes: YAML reads yes as true"
    ]


def test_true_where_text_is_meant_is_still_pydantic_s_message() -> None:
    # `true` is a boolean as written: no word to quote.
    text = "rules:\n  - name: true\n    match: ['a=\"b\"']\n    " + TARGET
    text += "    steps: [{action: test.restart}]\n"
    assert errors_of({"a.yaml": text}) == ["a.yaml:2: name: Input should be a valid string"]


def test_a_param_yaml_reads_as_a_boolean_where_a_number_is_meant_is_named() -> None:
    # Was "max_pods: true is a boolean, not a number": the word written is named.
    text = one_rule(
        "target: {kind: Deployment, namespace: shop, name: web}\n"
        "steps:\n"
        "  - action: kubernetes.delete_pod\n"
        "    params: {max_pods: on}\n"
        "    approval: never\n"
    )
    assert [str(e) for e in lint_files({"a.yaml": text}, default_registry(), POLICY)] == [
        "a.yaml:7: rule 'r': invalid params for kubernetes.delete_pod: max_pods: on is YAML's"
        " true, a boolean, not a number: write the number"
    ]
