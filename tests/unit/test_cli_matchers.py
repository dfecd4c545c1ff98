"""`remediator lint` and `simulate` with Alertmanager matcher lists and UTF-8 label names.

The kinds of cases 01 (comma-separated matchers in one item, a trailing comma) and 03
(OpenTelemetry label names in matchers and targets), with data of our own.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from receiver.cli import main
from tests.support.payloads import alert, notification_body

LISTS = """\
rules:
  - name: restart-on-disk-full
    match: ['alertname=DiskFull, team=storage']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.app }}"}
    steps:
      - action: kubernetes.rollout_restart
  - name: restart-with-trailing-comma
    match: ['alertname="DiskFull"', '{team=storage,}']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.app }}"}
    steps:
      - action: kubernetes.rollout_restart
"""

OTEL = """\
rules:
  - name: restart-otel-statefulset
    match: ['alertname=PodOOM', '{"k8s.statefulset.name"!=""}', 'cloud.region=eu-west']
    target:
      kind: StatefulSet
      namespace: "{{ labels.k8s.namespace.name }}"
      name: "{{ labels['k8s.statefulset.name'] }}"
    steps:
      - action: kubernetes.rollout_restart
"""

WARNED = """\
rules:
  - name: restart-on-disk-full
    match:
      - alertname=DiskFull
      - 'mount=~/var/\\d+'
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.app }}"}
    steps:
      - action: kubernetes.rollout_restart
"""


def _notification(labels: dict[str, str]) -> dict[str, object]:
    sent = alert(
        labels,
        starts_at="2026-11-30T01:00:00Z",
        annotations={},
        generator_url="http://prometheus.invalid/graph",
    )
    return notification_body(sent, external_url="http://alertmanager.invalid")


def _run(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, env={}, catch_exceptions=False)


def _setup(tmp_path: Path, rules: str, labels: dict[str, str]) -> tuple[Path, Path]:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "rules.yaml").write_text(rules)
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(_notification(labels)))
    return directory, payload


def _planned(directory: Path, payload: Path) -> list[tuple[str, dict[str, str]]]:
    result = _run(["simulate", str(payload), "--rules", str(directory), "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)["plans"]
    return [(run["rule"], run["target"]) for run in record["runs"]]


def test_comma_separated_items_and_a_trailing_comma_match(tmp_path: Path) -> None:
    labels = {"alertname": "DiskFull", "team": "storage", "namespace": "files", "app": "minio"}
    directory, payload = _setup(tmp_path, LISTS, labels)
    lint = _run(["lint", str(directory)])
    assert lint.exit_code == 0, lint.output
    assert lint.stdout.strip() == "2 rules OK in 1 file"
    target = {"kind": "Deployment", "namespace": "files", "name": "minio"}
    assert _planned(directory, payload) == [
        ("restart-on-disk-full", target),
        ("restart-with-trailing-comma", target),
    ]


def test_a_team_that_differs_matches_neither(tmp_path: Path) -> None:
    labels = {"alertname": "DiskFull", "team": "web", "namespace": "files", "app": "minio"}
    directory, payload = _setup(tmp_path, LISTS, labels)
    assert _planned(directory, payload) == []


def test_otel_label_names_are_matched_and_targeted(tmp_path: Path) -> None:
    labels = {
        "alertname": "PodOOM",
        "cloud.region": "eu-west",
        "k8s.namespace.name": "ledger",
        "k8s.statefulset.name": "postgres",
    }
    directory, payload = _setup(tmp_path, OTEL, labels)
    lint = _run(["lint", str(directory)])
    assert lint.exit_code == 0, lint.output
    assert _planned(directory, payload) == [
        (
            "restart-otel-statefulset",
            {"kind": "StatefulSet", "namespace": "ledger", "name": "postgres"},
        )
    ]


def test_lint_shows_warnings_at_file_and_line_and_passes(tmp_path: Path) -> None:
    directory, _ = _setup(tmp_path, WARNED, {})
    result = _run(["lint", str(directory)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"{directory}/rules.yaml:5: warning: rule 'restart-on-disk-full'")
    assert "utf8-strict-mode" in lines[0]
    assert lines[-1] == "1 rule OK in 1 file, 1 warning"


def test_lint_strict_fails_on_warnings(tmp_path: Path) -> None:
    directory, _ = _setup(tmp_path, WARNED, {})
    result = _run(["lint", "--strict", str(directory)])
    assert result.exit_code == 1
    assert "warning:" in result.stdout
    assert "--strict" in result.stderr
    (tmp_path / "clean").mkdir()
    clean, _ = _setup(tmp_path / "clean", LISTS, {})
    assert _run(["lint", "--strict", str(clean)]).exit_code == 0
