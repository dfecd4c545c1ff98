"""What a rule author gets wrong first, said at its file:line with the rule and the field:
an unquoted `{{ ... }}` template, a Jinja template naming what it is not given, a channel the
configuration does not have."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.rules.compile import check_files, lint_files
from receiver.rules.errors import logged
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
    assert (
        "a.yaml:3: keys must be strings, not a mapping (a `{...}` or `? a: b` key): "
        "write the key as text"
    ) in other
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


def test_an_unquoted_matcher_list_in_braces_says_to_quote_it() -> None:
    # Alertmanager's brace form, written as its docs show it, is a YAML flow mapping unquoted:
    # pydantic said "Input should be a valid string" at the item.
    text = (
        "rules:\n"
        "  - name: r\n"
        "    match:\n"
        '      - {alertname="A", severity=~"warning|critical"}\n'
        "      - alertname: A\n"
        "    target: {kind: Deployment, namespace: shop, name: web}\n"
        "    steps: [{action: test.restart}]\n"
    )
    errors = errors_of({"a.yaml": text})
    assert errors == [
        "a.yaml:4: rule 'r': match[0]: a matcher list in braces must be quoted in YAML "
        '(\'{alertname="A", severity=~"warning|critical"}\'): unquoted, YAML reads the '
        "braces as a mapping",
        "a.yaml:5: rule 'r': match[1]: a matcher is text such as 'alertname=\"X\"' (quoted in "
        "YAML), not a mapping",
    ], errors


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


# --------------------------------------------------------------------------------------------
# notify channels


CHANNEL_RULES = """\
rules:
  - name: unknown-channel
    match: ['alertname="UnknownChan"']
    target: {kind: Deployment, namespace: shop, name: web}
    steps:
      - action: notify
        params: {channel: nosuch, message: "hi"}
    verify: {resolved_within: 5m}
    on_failed:
      - action: notify
        params: {channel: oncall, message: "did not help"}
    on_resolved:
      - action: notify
        params: {channel: pager, message: "resolved"}
    notify: {channel: nosuch2}
"""


def _checked(channels: frozenset[str] | None) -> tuple[list[str], list[str]]:
    errors, warnings = check_files(
        {"a.yaml": CHANNEL_RULES}, default_registry(), POLICY, channels=channels
    )
    return [str(e) for e in errors], [str(w) for w in warnings]


def test_a_channel_that_is_not_configured_is_an_error_at_its_field() -> None:
    errors, warnings = _checked(frozenset({"oncall", "ops"}))
    configured = "is configured (notify.channels: oncall, ops)"
    assert errors == [
        f"a.yaml:7: rule 'unknown-channel': steps[0].params.channel: no notify channel named "
        f"'nosuch' {configured}",
        f"a.yaml:14: rule 'unknown-channel': on_resolved[0].params.channel: no notify channel "
        f"named 'pager' {configured}",
        f"a.yaml:15: rule 'unknown-channel': notify.channel: no notify channel named "
        f"'nosuch2' {configured}",
    ]
    assert warnings == []


def test_no_channel_configured_at_all_is_a_warning_at_each_field() -> None:
    # The quickstart and the base deployment run the shipped rules with no channel yet.
    errors, warnings = _checked(frozenset())
    assert errors == []
    tail = "no notify channels are configured (notify.channels), so messages to"
    assert warnings == [
        f"a.yaml:7: warning: rule 'unknown-channel': steps[0].params.channel: {tail} 'nosuch' "
        "are recorded as undelivered",
        f"a.yaml:11: warning: rule 'unknown-channel': on_failed[0].params.channel: {tail} "
        "'oncall' are recorded as undelivered",
        f"a.yaml:14: warning: rule 'unknown-channel': on_resolved[0].params.channel: {tail} "
        "'pager' are recorded as undelivered",
        f"a.yaml:15: warning: rule 'unknown-channel': notify.channel: {tail} 'nosuch2' are "
        "recorded as undelivered",
    ]


SECOND_CHANNEL_RULE = """\
rules:
  - name: second
    match: ['alertname="Second"', 'path=~/var/\\d+']
    target: {kind: Deployment, namespace: shop, name: api}
    steps:
      - action: kubernetes.rollout_restart
    notify: {channel: oncall}
"""


def test_the_service_logs_no_channel_configured_once_naming_the_rules() -> None:
    # Each field keeps its warning (lint shows them at their lines); the service's log said
    # the same sentence once per field of every rule, seven lines before the first banner.
    files = {"a.yaml": CHANNEL_RULES, "b.yaml": SECOND_CHANNEL_RULE}
    errors, warnings = check_files(files, default_registry(), POLICY, channels=frozenset())
    assert errors == []
    matcher = [str(w) for w in warnings if "no notify channels" not in w.message]
    assert len(matcher) == 1  # another kind of warning, said on its own, where it was
    tail = "are recorded as undelivered"
    assert logged(warnings) == [
        {
            "warning": "no notify channels are configured (notify.channels), so messages to "
            f"'nosuch', 'oncall', 'pager', 'nosuch2' {tail}",
            "rules": ["unknown-channel", "second"],
            "at": ["a.yaml:7", "a.yaml:11", "a.yaml:14", "a.yaml:15", "b.yaml:7"],
        },
        {"warning": matcher[0]},
    ]
    # A warning not shared with any other stays as it was.
    [only] = [w for w in warnings if w.shared is None]
    assert logged([only]) == [{"warning": str(only)}]


def test_lint_checks_channels_against_the_configuration_it_is_given(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(CHANNEL_RULES)
    hook = tmp_path / "hook-url"
    hook.write_text("http://127.0.0.1:9/hook")
    hook.chmod(0o600)
    config = tmp_path / "remediator.yaml"
    config.write_text(
        f"rules_dir: {rules}\nnotify:\n  channels:\n"
        f"    oncall: {{kind: webhook, url_file: {hook}}}\n"
    )
    runner = CliRunner()
    configured = runner.invoke(main, ["--config", str(config), "lint"], env={})
    assert configured.exit_code == 1, configured.output
    assert configured.stdout.splitlines() == [
        f"{rules}/a.yaml:7: rule 'unknown-channel': steps[0].params.channel: no notify channel "
        "named 'nosuch' is configured (notify.channels: oncall)",
        f"{rules}/a.yaml:14: rule 'unknown-channel': on_resolved[0].params.channel: no notify "
        "channel named 'pager' is configured (notify.channels: oncall)",
        f"{rules}/a.yaml:15: rule 'unknown-channel': notify.channel: no notify channel named "
        "'nosuch2' is configured (notify.channels: oncall)",
    ]
    # Bare files: nothing to check the names against, and nothing said about it.
    bare = runner.invoke(main, ["lint", str(rules)], env={})
    assert bare.exit_code == 0, bare.output
    assert bare.stdout == "1 rule OK in 1 file\n"
