"""What a rule author gets wrong first, said at its file:line with the rule and the field:
an unquoted `{{ ... }}` template, a Jinja template naming what it is not given, a channel the
configuration does not have."""

from __future__ import annotations

import pytest

from receiver.rules.compile import lint_files
from remediations.registry import default_registry
from tests.support.rules import POLICY, errors_of

QUOTE = "template must be quoted in YAML"


def test_an_unquoted_template_is_named_with_its_rule_field_and_the_quoting_to_write() -> None:
    text = (
        "rules:\n"
        "  - match: ['alertname=\"A\"']\n"
        "    target: {kind: Deployment, namespace: {{ labels.namespace }}, name: web}\n"
        "    steps:\n"
        "      - action: test.grow\n"
        "        params:\n"
        "          container: {{labels.container}}\n"
        "          factor: 2\n"
        "    name: web\n"  # the name after the fields: the message names the rule all the same
    )
    assert errors_of({"a.yaml": text}) == [
        "a.yaml:3: rule 'web': `target.namespace`: a `{{ ... }}` template must be quoted in "
        "YAML ('{{ labels.namespace }}'): unquoted, YAML reads the braces as a mapping",
        "a.yaml:7: rule 'web': `steps[0].params.container`: a `{{ ... }}` template must be "
        "quoted in YAML ('{{labels.container}}'): unquoted, YAML reads the braces as a mapping",
    ]
    # `{ {a: 1}: x }`: braces apart, not a template; the old message stands.
    other = errors_of({"a.yaml": "rules:\n  - name: r\n    target: { {a: 1}: x }\n"})
    assert "a.yaml:3: keys must be strings, not None" in other
    assert not [e for e in other if QUOTE in e]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "rules:\n  - name: r\n    match: [{{ labels.x }}]\n",
            "a.yaml:3: rule 'r': `match[0]`: a `{{ ... }}` template must be quoted in YAML "
            "('{{ labels.x }}')",
            id="in-a-list",
        ),
        pytest.param(
            "rules:\n  - target: {{ it's }}\n",
            "a.yaml:2: `rules[0].target`: a `{{ ... }}` template must be quoted in YAML "
            "('{{ it''s }}')",
            id="no-rule-name",
        ),
    ],
)
def test_an_unquoted_template_anywhere_says_where(text: str, expected: str) -> None:
    (error,) = [e for e in errors_of({"a.yaml": text}) if QUOTE in e]
    assert error.startswith(expected)


NOTIFY_RULE = """\
rules:
  - name: tell
    match: ['alertname="A"']
    target: {kind: Deployment, namespace: shop, name: web}
    steps:
      - action: notify
        params:
          channel: oncall
          title: "{{ lables.alertname }}"
          message: "dash=[{{ labels.app-name }}]"
"""


def test_a_notify_template_naming_what_it_is_not_given_fails_lint_at_its_field() -> None:
    errors = [str(e) for e in lint_files({"a.yaml": NOTIFY_RULE}, default_registry(), POLICY)]
    assert errors == [
        "a.yaml:9: rule 'tell': invalid params for notify: title: template line 1: unknown "
        "name 'lables' (did you mean 'labels'?); a template reads labels, annotations, alert, "
        "target, run, rule, and names it sets itself (it would render as an empty string)",
        "a.yaml:10: rule 'tell': invalid params for notify: message: template line 1: "
        'labels.app-name reads as labels.app minus name; for a name with "-" write '
        'labels["app-name"]',
    ]
