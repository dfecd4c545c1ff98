"""Every error a rule file can hold, reported with its exact file:line, all at once."""

from __future__ import annotations

import textwrap

import pytest

from receiver.model import NamespacePolicy
from receiver.rules.compile import compile_files, lint_files
from receiver.rules.errors import RuleError, RuleSetError
from remediations.registry import default_registry
from tests.support.rules import GOOD, POLICY, TARGET, errors_of, one_rule, registry

# --------------------------------------------------------------------------------------------
# every error kind, with its exact line


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nstep: []\n",
            "a.yaml:6: rule 'r': unknown field 'step' (did you mean 'steps'?)",
            id="typo-top",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n    parms: {}\n",
            "a.yaml:7: rule 'r': steps[0]: unknown field 'parms' (did you mean 'params'?)",
            id="typo-step",
        ),
        pytest.param(
            "steps: [{action: test.restart}]\n",
            "a.yaml:2: rule 'r': missing required field 'target'",
            id="missing-target",
        ),
        pytest.param(
            "target:\n  kind: Deployment\n  namespace: ns\nsteps: [{action: test.restart}]\n",
            "a.yaml:4: rule 'r': target: missing required field 'name'",
            id="missing-nested",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n  - action: test.nope\n",
            "a.yaml:7: rule 'r': steps[1].action: unknown action 'test.nope'; "
            "known actions: test.grow, test.restart, test.scale, test.undo, test.vacuum",
            id="unknown-action",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.grow\n    params:\n      container: app\n"
            "      factor: -1\n",
            "a.yaml:9: rule 'r': invalid params for test.grow: factor: "
            "Input should be greater than 0",
            id="params-value",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.grow\n    params: {factor: 2}\n",
            "a.yaml:7: rule 'r': invalid params for test.grow: container: Field required",
            id="params-missing",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n    params: {force: true}\n",
            "a.yaml:7: rule 'r': invalid params for test.restart: unknown param 'force'; it"
            " takes none",
            id="params-extra",
        ),
        # An unknown param is told the one it is a typo of, as a settings key is (typo_of).
        pytest.param(
            TARGET + "steps:\n  - action: test.scale\n    params: {max: 3, restor: true}\n",
            "a.yaml:7: rule 'r': invalid params for test.scale: unknown param 'restor' (did you"
            " mean 'restore'?)",
            id="params-typo",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.grow\n    params: {container: app, factor: 2,"
            " ratio: 3}\n",
            "a.yaml:7: rule 'r': invalid params for test.grow: unknown param 'ratio'; it takes"
            " container, factor",
            id="params-other-words",
        ),
        pytest.param(
            "target: {kind: DaemonSet, namespace: ns, name: x}\nsteps:\n  - action: test.restart\n",
            "a.yaml:6: rule 'r': test.restart cannot act on a DaemonSet "
            "(it acts on: Deployment, StatefulSet)",
            id="kind-unsupported",
        ),
        pytest.param(
            "target: {kind: StatefulSet, namespace: ns, name: x}\n"
            "steps: [{action: test.restart}]\n"
            "on_resolved:\n  - action: test.undo\n",
            "a.yaml:7: rule 'r': test.undo cannot act on a StatefulSet (it acts on: Deployment)",
            id="kind-unsupported-on-resolved",
        ),
        pytest.param(
            "target:\n  kind: Deployment\n  namespace: kube-system\n  name: x\n"
            "steps: [{action: test.restart}]\n",
            "a.yaml:6: rule 'r': target.namespace: namespace 'kube-system' is not allowed by "
            "policy (allow=[], deny=['kube-system', 'kube-public', 'kube-node-lease'])",
            id="literal-namespace-denied",
        ),
        pytest.param(
            "target:\n  kind: Deployment\n  namespace: '{{ labels.namespace }}'\n  name: Bad_Name\n"
            "steps: [{action: test.restart}]\n",
            "a.yaml:7: rule 'r': target.name: name 'Bad_Name' is not a DNS-1123 subdomain "
            "(a-z, 0-9, '-', '.', at most 253)",
            id="literal-name-invalid",
        ),
        pytest.param(
            "target:\n  kind: Deployment\n  namespace: '{{ label.namespace }}'\n  name: x\n"
            "steps: [{action: test.restart}]\n",
            "a.yaml:6: rule 'r': target.namespace: unknown root 'label' in 'label.namespace'; "
            "use labels or annotations in template '{{ label.namespace }}'",
            id="bad-template",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nguards: {cooldown: 15}\n",
            "a.yaml:6: rule 'r': guards.cooldown: 15 is not a duration: a number needs a unit, "
            "e.g. 15s or 15m (units w, d, h, m, s, ms, largest first)",
            id="bad-duration",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nguards: {cooldown: ٣h}\n",
            "a.yaml:6: rule 'r': guards.cooldown: '٣h' is not a duration: write its digits as "
            "ASCII 0-9; expected a duration like 30s, 15m, 1h30m or 2d (units w, d, h, m, s, ms, "
            "largest first)",
            id="non-ascii-digit",
        ),
        pytest.param(
            # A plain scalar is stripped by YAML; a quoted one keeps its blanks and is refused.
            TARGET + "steps: [{action: test.restart}]\nguards: {cooldown: ' 1h '}\n",
            "a.yaml:6: rule 'r': guards.cooldown: ' 1h ' is not a duration: remove the blanks "
            "around it; expected a duration like 30s, 15m, 1h30m or 2d (units w, d, h, m, s, ms, "
            "largest first)",
            id="blanks-around-a-duration",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nverify: {resolved_within: 0s}\n",
            "a.yaml:6: rule 'r': verify.resolved_within: '0s' is not a positive duration",
            id="zero-duration",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart, approval: maybe}]\n",
            "a.yaml:5: rule 'r': steps[0].approval: Input should be 'auto', 'required' or 'never'",
            id="bad-approval",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.grow\n    params: {container: app, factor: 2}\n"
            "    when: {repeated: {times: 2, within: 1h}}\n",
            "a.yaml:5: rule 'r': every step waits for a repetition, so the first alert would do "
            "nothing and never count as one; add a step without `when`",
            id="all-steps-wait",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n  - action: test.grow\n"
            "    params: {container: app, factor: 2}\n"
            "    when: {repeated: {times: 0, within: 1h}}\n",
            "a.yaml:9: rule 'r': steps[1].when.repeated.times: "
            "Input should be greater than or equal to 1",
            id="times-zero",
        ),
        pytest.param(
            # Pydantic's lax mode read `true` as 1.
            TARGET
            + "steps: [{action: test.restart}]\nguards: {max_runs: {count: true, per: 1h}}\n",
            "a.yaml:6: rule 'r': guards.max_runs.count: true is a boolean, not a number: write the "
            "number",
            id="count-a-boolean",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n  - action: test.grow\n"
            "    params: {container: app, factor: 2}\n"
            "    when: {repeated: {times: true, within: 1h}}\n",
            "a.yaml:9: rule 'r': steps[1].when.repeated.times: true is a boolean, not a number: "
            "write the number",
            id="times-a-boolean",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\non_resolved:\n"
            "  - action: test.restart\n    when: {repeated: {times: 2, within: 1h}}\n",
            "a.yaml:8: rule 'r': on_resolved steps take no `when`: they run whenever the alert "
            "resolves",
            id="when-on-resolved",
        ),
        pytest.param(
            TARGET + "steps: []\n",
            "a.yaml:5: rule 'r': steps must list at least one step",
            id="no-steps",
        ),
    ],
)
def test_rule_error_with_line(body: str, expected: str) -> None:
    assert errors_of({"a.yaml": one_rule(body)}) == [expected]


def test_empty_match_list() -> None:
    text = (
        "rules:\n  - name: r\n    match: []\n    "
        + TARGET
        + "    steps: [{action: test.restart}]\n"
    )
    assert errors_of({"a.yaml": text}) == [
        "a.yaml:3: rule 'r': match must list at least one matcher; an empty list would match "
        "every alert"
    ]


def test_invalid_matcher_points_at_the_item() -> None:
    text = (
        "rules:\n  - name: r\n    match:\n      - 'alertname=\"A\"'\n      - 'severity=~\"(x\"'\n"
        "    " + TARGET + "    steps: [{action: test.restart}]\n"
    )
    assert errors_of({"a.yaml": text}) == [
        "a.yaml:5: rule 'r': match[1]: invalid regular expression in severity=~\"(x\": "
        "error parsing regexp: missing closing ): `^(?:(x)$`"
    ]


def test_bad_rule_name() -> None:
    text = "rules:\n  - name: Restart_It\n    match: ['a=\"b\"']\n    " + TARGET
    text += "    steps: [{action: test.restart}]\n"
    assert errors_of({"a.yaml": text}) == [
        "a.yaml:2: rule 'Restart_It': name: rule name 'Restart_It' must be lower-case letters, "
        "digits and '-', start and end with a letter or digit, at most 63 characters"
    ]


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


def test_namespace_policy_allow_list_applies_to_literal_namespaces() -> None:
    text = one_rule(
        "target: {kind: Deployment, namespace: shop, name: x}\nsteps: [{action: test.restart}]\n"
    )
    assert errors_of({"a.yaml": text}, NamespacePolicy(allow=("shop",))) == []
    (error,) = errors_of({"a.yaml": text}, NamespacePolicy(allow=("billing",)))
    assert error.startswith("a.yaml:4: rule 'r': target.namespace: namespace 'shop' is not allowed")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            'namespace: shop, name: "a/{{ labels.d }}"',
            "target.name: name 'a/<label value>' is not a DNS-1123 subdomain",
        ),
        (
            'namespace: shop, name: "{{ labels.app }}_worker"',
            "target.name: name '<label value>_worker' is not a DNS-1123 subdomain",
        ),
        (
            'namespace: "{{ labels.team }}.prod", name: "{{ labels.d }}"',
            "target.namespace: namespace '<label value>.prod' is not a DNS-1123 label",
        ),
        (
            'namespace: shop, name: "{{ labels.d }}-{{ labels.e }}-"',
            "target.name: name '<label value>-<label value>-' is not a DNS-1123 subdomain",
        ),
    ],
)
def test_a_templated_target_no_label_value_can_make_valid_is_refused(
    target: str, expected: str
) -> None:
    """The literal text around a template decides validity whatever the labels hold: such a
    rule used to load and then refuse every alert it matched."""
    text = one_rule(f"target: {{kind: Deployment, {target}}}\nsteps: [{{action: test.restart}}]\n")
    (error,) = errors_of({"a.yaml": text})
    assert error.startswith(f"a.yaml:4: rule 'r': {expected}"), error
    assert "whatever the labels hold" in error, error


@pytest.mark.parametrize(
    "target",
    [
        'namespace: "team-{{ labels.team }}", name: "{{ labels.app }}-worker"',
        'namespace: shop, name: "{{ labels.app }}.{{ labels.tier }}"',
        'namespace: shop, name: "v2-{{ labels.d }}"',
    ],
)
def test_a_templated_target_some_label_value_makes_valid_loads(target: str) -> None:
    text = one_rule(f"target: {{kind: Deployment, {target}}}\nsteps: [{{action: test.restart}}]\n")
    assert errors_of({"a.yaml": text}) == []


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
