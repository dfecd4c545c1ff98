"""Rule test files, loaded: the rule files they name and the rule and action names they use,
every independent error of a file in one run, the settings' layering and offsets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from receiver.rules.errors import RuleError
from receiver.ruletest.files import TestFile, load_test_file, settings_of
from receiver.ruletest.spec import DEFAULT_START, SettingsSpec, offset_seconds
from remediations.registry import default_registry
from tests.support.ruletest_texts import ALERTS, _one_test

ROOT = Path(__file__).resolve().parents[2]

RULES = """\
rules:
  - name: restart
    match: ['alertname="Mem"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
"""


def _load(tmp_path: Path, text: str, rules: str | None = RULES) -> TestFile | list[RuleError]:
    if rules is not None:
        (tmp_path / "r.yaml").write_text(rules)
    (tmp_path / "t.yaml").write_text(text)
    return load_test_file(tmp_path / "t.yaml", default_registry())


def test_rule_and_action_names_must_exist(tmp_path: Path) -> None:
    body = (
        ALERTS
        + "fixtures: [{target: Deployment/a/b, steps: {kubernetes.scal: {outcome: failed}}}]\n"
        "timeline: [{at: 1m, approve: {rule: restrat}}]\n"
        "expect: [{runs: [{rule: restart, steps: [kubernetes.rollout_restar: simulated]}]}]\n"
    )
    loaded = _load(tmp_path, _one_test(body))
    assert isinstance(loaded, list)
    errors = [str(e) for e in loaded]
    prefix = str(tmp_path / "t.yaml")
    assert errors == [
        f"{prefix}:5: no action 'kubernetes.scal' registered (did you mean 'kubernetes.scale'?)",
        f"{prefix}:6: no rule 'restrat' in rule_files (did you mean 'restart'?)",
        f"{prefix}:7: no action 'kubernetes.rollout_restar' registered "
        "(did you mean 'kubernetes.rollout_restart'?)",
    ]


def test_rule_files_are_read_relative_to_the_test_file_and_their_errors_named(
    tmp_path: Path,
) -> None:
    body = ALERTS + "timeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n"
    missing = _load(tmp_path, _one_test(body).replace("r.yaml", "nope.yaml"), rules=None)
    assert isinstance(missing, list)
    [error] = missing
    assert str(error).startswith(f"{tmp_path / 't.yaml'}:1: cannot read {tmp_path / 'nope.yaml'}")
    broken = _load(tmp_path, _one_test(body), rules=RULES.replace("steps:", "stepz:"))
    assert isinstance(broken, list)
    assert any(str(e).startswith(f"{tmp_path / 'r.yaml'}:") for e in broken), broken
    loaded = _load(tmp_path, _one_test(body))
    assert isinstance(loaded, TestFile)
    assert [r.name for r in loaded.rulesets[0].rules] == ["restart"]


def test_a_rule_file_not_in_utf8_is_told_at_its_own_line(tmp_path: Path) -> None:
    body = ALERTS + "timeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n"
    (tmp_path / "r.yaml").write_bytes(RULES.replace("restart", "caf\xe9", 1).encode("latin-1"))
    loaded = _load(tmp_path, _one_test(body), rules=None)
    assert isinstance(loaded, list)
    [error] = loaded
    assert str(error).startswith(
        f"{tmp_path / 't.yaml'}:1: {tmp_path / 'r.yaml'}:2: not valid UTF-8: byte 0xE9 at column 14"
    )


@pytest.mark.parametrize(("first", "second"), [("r.yaml", "r.yaml"), ("./r.yaml", "r.yaml")])
def test_a_rule_file_listed_twice_is_an_error_at_its_second_line(
    tmp_path: Path, first: str, second: str
) -> None:
    """Once a file that named one rule file twice loaded as no tests and no errors: `remediator
    test` ran nothing and exited 0."""
    body = ALERTS + "timeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n"
    text = _one_test(body).replace(
        "rule_files: [r.yaml]", f"rule_files:\n  - {first}\n  - {second}"
    )
    loaded = _load(tmp_path, text)
    assert isinstance(loaded, list)
    assert [str(e) for e in loaded] == [
        f"{tmp_path / 't.yaml'}:3: {tmp_path / 'r.yaml'} is listed twice in rule_files "
        "(first at line 2): list each rule file once"
    ]


def test_a_file_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    [error] = load_test_file(tmp_path / "absent.yaml", default_registry())  # type: ignore[misc]
    assert str(error).startswith(f"{tmp_path / 'absent.yaml'}: cannot read")
    (tmp_path / "bin.yaml").write_bytes(b"rule_files:\n  - \xff\n")
    [error] = load_test_file(tmp_path / "bin.yaml", default_registry())  # type: ignore[misc]
    assert str(error).startswith(
        f"{tmp_path / 'bin.yaml'}:2: not valid UTF-8: byte 0xFF at column 5"
    )


def test_every_shipped_test_file_loads() -> None:
    files = sorted((ROOT / "rules" / "tests").glob("*.yaml"))
    assert files
    for path in files:
        loaded = load_test_file(path, default_registry())
        assert isinstance(loaded, TestFile), loaded


def test_settings_layer_test_over_file_over_the_service_defaults() -> None:
    defaults = settings_of(None, None)
    assert defaults.start == DEFAULT_START
    assert defaults.guards.budget_count == 10
    assert defaults.guards.lock_ttl_s == 600
    assert defaults.approval_ttl_s == 1800
    assert defaults.late_delivery_window_s == 330
    assert defaults.policy.deny == ("kube-system", "kube-public", "kube-node-lease")
    file = SettingsSpec.model_validate(
        {"budget": {"count": 2}, "lock_ttl": "1m", "namespaces": {"allow": ["shop"]}}
    )
    test = SettingsSpec.model_validate({"budget": {"count": 5, "window": "2h"}})
    layered = settings_of(file, test)
    assert (layered.guards.budget_count, layered.guards.budget_window_s) == (5, 7200)
    assert layered.guards.lock_ttl_s == 60
    assert layered.policy.allow == ("shop",)
    assert layered.at(90) == DEFAULT_START + timedelta(seconds=90)


def test_offsets() -> None:
    assert offset_seconds(0) == 0
    assert offset_seconds("1h30m") == 5400
    assert offset_seconds("-10m", signed=True) == -600
    with pytest.raises(ValueError, match="not a duration"):
        offset_seconds("-10m")
    with pytest.raises(ValueError, match="not a duration"):
        offset_seconds(90)


# Independent mistakes, one of each stage that used to hide the next: a schema error (test 1),
# `start` without a zone, the second pass (test 2: time order, an unknown alert), a rule file
# that cannot be read.
MANY_MISTAKES = """\
rule_files: [r.yaml, missing.yaml]
settings: {start: '2026-01-01T09:00:00'}
tests:
  - name: first
    alerts: {a: {labels: {alertname: X}}}
    timeline: [{at: 1m, firing: a}]
    expect: [{no_runz: true}]
  - name: second
    alerts: {a: {labels: {alertname: X}}}
    timeline:
      - {at: 2m, firing: a}
      - {at: 1m, firing: b}
    expect: [{no_runs: true}]
"""


def test_every_independent_error_of_a_file_is_reported_in_one_run(tmp_path: Path) -> None:
    loaded = _load(tmp_path, MANY_MISTAKES)
    assert isinstance(loaded, list)
    prefix = str(tmp_path / "t.yaml")
    errors = [str(e).removeprefix(prefix) for e in loaded]
    assert errors == [
        f":1: cannot read {tmp_path / 'missing.yaml'}: No such file or directory",
        ":2: settings.start: give a time zone, e.g. 2026-01-01T09:00:00Z",
        ":7: tests[0].expect[0]: unknown field 'no_runz' (did you mean 'no_runs'?)",
        ":12: timeline entries must be in time order: this one is earlier than the one before",
        ":12: no alert 'b' under alerts",
    ], errors


def test_rule_and_action_names_are_checked_alongside_the_timeline(tmp_path: Path) -> None:
    body = (
        ALERTS + "timeline: [{at: 2m, firing: a}, {at: 1m, approve: {rule: restrat}}]\n"
        "expect: [{no_runs: true}]\n"
    )
    loaded = _load(tmp_path, _one_test(body))
    assert isinstance(loaded, list)
    messages = [str(e).split(": ", 1)[1] for e in loaded]
    assert any(m.startswith("timeline entries must be in time order") for m in messages)
    assert "no rule 'restrat' in rule_files (did you mean 'restart'?)" in messages
