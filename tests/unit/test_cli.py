"""The ``remediator`` command line: lint, simulate and configuration errors, without servers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import receiver
import receiver.cli
from receiver.cli import main

SAMPLE = Path(receiver.__file__).parent / "samples" / "high-memory.json"
SHIPPED_RULES = Path(receiver.__file__).parent.parent / "rules"

GOOD_RULE = """\
rules:
  - name: restart-on-high-memory
    description: Restart the pods of a deployment whose memory stays near its limit.
    match: ['alertname="HighMemoryUsage"', 'severity=~"warning|critical"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
    verify: {resolved_within: 10m}
    guards: {cooldown: 15m, max_runs: {count: 3, per: 1h}}
"""

BAD_RULE = """\
rules:
  - name: broken
    match: ['alertname="X"']
    target: {kind: Deployment, namespace: demo, name: web}
    steps:
      - action: kubernetes.no_such_action
"""


def run(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, args, env=env or {}, catch_exceptions=False)


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "good"
    directory.mkdir()
    (directory / "memory.yaml").write_text(GOOD_RULE)
    return directory


@pytest.fixture
def bad_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "memory.yaml").write_text(GOOD_RULE)
    (directory / "broken.yaml").write_text(BAD_RULE)
    (directory / "syntax.yaml").write_text("rules:\n  - name: [unclosed\n")
    return directory


# -- lint ----------------------------------------------------------------------------------------


def test_lint_good_directory(good_dir: Path) -> None:
    result = run(["lint", str(good_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1 rule OK in 1 file"


def test_lint_uses_rules_dir_setting(good_dir: Path) -> None:
    result = run(["lint"], env={"REMEDIATOR_RULES_DIR": str(good_dir)})
    assert result.exit_code == 0, result.output
    assert "1 rule OK" in result.stdout


def test_lint_shipped_rules() -> None:
    assert SHIPPED_RULES.is_dir(), f"{SHIPPED_RULES}: the repository ships its rules"
    result = run(["lint", str(SHIPPED_RULES)])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"\d+ rules? OK in \d+ files?", result.stdout.strip())


def test_lint_bad_directory_prints_every_error(bad_dir: Path) -> None:
    result = run(["lint", str(bad_dir)])
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) >= 2
    for line in lines:
        assert re.match(rf"{re.escape(str(bad_dir))}/\w+\.yaml:\d+: \S", line), line
    assert any("broken.yaml" in line and "no_such_action" in line for line in lines)
    assert any("syntax.yaml" in line for line in lines)
    assert re.search(r"^\d+ errors?$", result.stderr, re.MULTILINE), result.stderr


def test_lint_missing_directory(tmp_path: Path) -> None:
    result = run(["lint", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "does not exist" in result.stdout


# -- simulate ------------------------------------------------------------------------------------


def test_simulate_prints_the_plan(good_dir: Path) -> None:
    result = run(["simulate", str(SAMPLE), "--rules", str(good_dir)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "HighMemoryUsage" in out
    assert "restart-on-high-memory" in out
    assert "Deployment/demo/web" in out
    assert "kubernetes.rollout_restart" in out


def test_simulate_shows_a_target_without_a_namespace_as_its_key(tmp_path: Path) -> None:
    """``HttpEndpoint//catcher`` was shown, a key ``runs --target`` refuses: the run lists and
    their filters write it ``HttpEndpoint/catcher``."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "call.yaml").write_text(
        "rules:\n  - name: call\n    match: ['alertname=\"HighMemoryUsage\"']\n"
        "    target: {kind: HttpEndpoint, name: catcher}\n"
        "    steps:\n      - action: http.call\n"
    )
    result = run(["simulate", str(SAMPLE), "--rules", str(rules)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "HttpEndpoint/catcher" in result.stdout
    assert "HttpEndpoint//catcher" not in result.stdout


def test_simulate_json(good_dir: Path) -> None:
    result = run(["simulate", str(SAMPLE), "--rules", str(good_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (plan,) = data["plans"]
    assert plan["alert"]["alertname"] == "HighMemoryUsage"
    (run_,) = plan["runs"]
    assert run_["rule"] == "restart-on-high-memory"
    assert run_["target"] == {"kind": "Deployment", "namespace": "demo", "name": "web"}
    assert [s["action"] for s in run_["steps"]] == ["kubernetes.rollout_restart"]
    assert plan["skips"] == []


def test_simulate_no_matching_rule_says_why(good_dir: Path, tmp_path: Path) -> None:
    payload = json.loads(SAMPLE.read_text())
    payload["alerts"][0]["labels"]["alertname"] = "SomethingElse"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(payload))
    result = run(["simulate", str(path), "--rules", str(good_dir), "--json"])
    assert result.exit_code == 0, result.output
    (plan,) = json.loads(result.stdout)["plans"]
    assert plan["runs"] == []
    assert plan["skips"] == [{"rule": None, "reason": "no rule matches"}]


def test_simulate_denied_namespace_is_a_skip(good_dir: Path) -> None:
    result = run(
        ["simulate", str(SAMPLE), "--rules", str(good_dir), "--json"],
        env={"REMEDIATOR_NAMESPACE_DENY": "demo"},
    )
    assert result.exit_code == 0, result.output
    (plan,) = json.loads(result.stdout)["plans"]
    assert plan["runs"] == []
    assert plan["skips"][0]["rule"] == "restart-on-high-memory"


def test_simulate_missing_file(good_dir: Path, tmp_path: Path) -> None:
    result = run(["simulate", str(tmp_path / "none.json"), "--rules", str(good_dir)])
    assert result.exit_code == 1
    assert "none.json: cannot read" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("{oops", "body"),
        (SAMPLE.read_text().replace('"version": "4"', '"version": "3"'), "version"),
        (SAMPLE.read_text().replace("2024-05-27T07:14:54.523Z", "noon"), "alerts.0.startsAt"),
    ],
)
def test_simulate_bad_payload_names_the_field(
    good_dir: Path, tmp_path: Path, content: str, field: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = run(["simulate", str(path), "--rules", str(good_dir)])
    assert result.exit_code == 1
    assert f"bad.json: {field}: " in result.stderr
    assert "Traceback" not in result.output


def test_simulate_refuses_a_payload_the_service_would_answer_413(
    good_dir: Path, tmp_path: Path
) -> None:
    # A valid notification padded past http.max_body_bytes: the webhook refuses it (413), so
    # simulate must not plan it either, nor read more of it (``/dev/zero`` never ended).
    path = tmp_path / "big.json"
    path.write_bytes(SAMPLE.read_bytes() + b" " * 4096)
    limit = str(path.stat().st_size - 1)
    result = run(
        ["simulate", str(path), "--rules", str(good_dir)], env={"REMEDIATOR_MAX_BODY_BYTES": limit}
    )
    assert result.exit_code == 1, result.output
    assert f"big.json: larger than {limit} bytes (http.max_body_bytes" in result.stderr
    assert "Traceback" not in result.output
    at_limit = run(
        ["simulate", str(path), "--rules", str(good_dir), "--json"],
        env={"REMEDIATOR_MAX_BODY_BYTES": str(path.stat().st_size)},
    )
    assert at_limit.exit_code == 0, at_limit.output


def test_simulate_with_invalid_rules(bad_dir: Path) -> None:
    result = run(["simulate", str(SAMPLE), "--rules", str(bad_dir)])
    assert result.exit_code == 1
    assert "broken.yaml:" in result.stderr


# -- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["lint"], ["simulate", str(SAMPLE)], ["serve"], ["runs"]])
def test_config_error_exits_2_naming_the_key(command: list[str]) -> None:
    result = run(command, env={"REMEDIATOR_MAX_BODY_BYTES": "lots"})
    assert result.exit_code == 2
    assert "REMEDIATOR_MAX_BODY_BYTES" in result.stderr
    assert "Traceback" not in result.output


def test_config_file_error_names_the_yaml_key(tmp_path: Path) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text("http:\n  port: not-a-port\n")
    result = run(["--config", str(config), "lint"])
    assert result.exit_code == 2
    assert "http.port" in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = run(["--config", str(tmp_path / "absent.yaml"), "lint"])
    assert result.exit_code == 2
    assert "absent.yaml" in result.stderr


def test_token_file_unreadable_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "token"
    result = run(["lint"], env={"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(missing)})
    assert result.exit_code == 2
    assert str(missing) in result.stderr


def test_serve_rejects_bad_port() -> None:
    result = run(["serve", "--port", "70000"])
    assert result.exit_code == 2
    assert "--port" in result.stderr


# -- the command tree ----------------------------------------------------------------------------


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix}{name} "))
    return found


def test_every_option_has_help() -> None:
    missing = [
        f"{name} {param.opts[0]}"
        for name, command in [("remediator", main), *_commands(main)]
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []


def test_every_command_and_argument_is_explained() -> None:
    """click shows no help for arguments: each is named in its command's help instead."""
    missing = [
        f"{name} {param.human_readable_name}"
        for name, command in _commands(main)
        for param in command.params
        if isinstance(param, click.Argument)
        and param.human_readable_name not in (command.help or "")
    ]
    assert missing == []
    assert [name for name, command in _commands(main) if not command.help] == []


def test_the_module_docstring_lists_every_command() -> None:
    doc = receiver.cli.__doc__ or ""
    names = [name for name, command in _commands(main) if not isinstance(command, click.Group)]
    assert names, "no commands registered"
    assert [name for name in names if f"``{name}``" not in doc] == []
