"""Every error a rule can hold (its schema, matchers, name, target), reported with its exact
file:line."""

from __future__ import annotations

import pytest

from receiver.model import NamespacePolicy
from tests.support.rules import TARGET, errors_of, one_rule


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
        # A part written as another kind of value: what it takes, not pydantic's "Input should
        # be a valid dictionary or instance of TargetSpec", a class of ours.
        pytest.param(
            "target: Deployment/ns/x\nsteps: [{action: test.restart}]\n",
            "a.yaml:4: rule 'r': target: expected a map of kind, namespace, name, not text",
            id="target-as-text",
        ),
        pytest.param(
            TARGET + "steps:\n  - test.restart\n",
            "a.yaml:6: rule 'r': steps[0]: expected a map of action, params, approval, when, not"
            " text (a step is `- action: NAME`, with its params under it)",
            id="step-as-text",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nnotify: oncall\n",
            "a.yaml:6: rule 'r': notify: expected a map of channel, events, not text",
            id="notify-as-text",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nguards: {max_runs: 3}\n",
            "a.yaml:6: rule 'r': guards.max_runs: expected a map of count, per, not a number",
            id="max-runs-as-a-number",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nverify: on\n",
            "a.yaml:6: rule 'r': verify: expected a map of resolved_within, settle, not true or"
            " false",
            id="verify-as-a-boolean",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\non_resolved: test.undo\n",
            "a.yaml:6: rule 'r': on_resolved: expected a list (`[...]`, or one `- ` line per"
            " item), not text",
            id="on-resolved-as-text",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n    params: force\n",
            "a.yaml:7: rule 'r': steps[0].params: expected a map (`name: value` pairs, or"
            " `{...}`), not text",
            id="params-as-text",
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
