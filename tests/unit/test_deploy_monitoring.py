"""deploy/grafana and deploy/prometheus: the dashboard and the service's own alerting rules ask
only for metrics the service exports, and the rules pass promtool's check and their tests.

The promtool checks need Debian's `prometheus` package (hack/e2e/install.sh); the rest is pure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.telemetry import Metrics
from tests.support.servers import server_missing

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "alert-remediator.json"
RULES = ROOT / "deploy" / "prometheus" / "alert-remediator-rules.yml"
TESTS = ROOT / "deploy" / "prometheus" / "tests.yml"

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "Inf", "NaN", "inf", "nan"}
)  # fmt: skip


def exported() -> set[str]:
    """Every series name the service's metrics can have (before any label is set)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label
    matchers, ranges, grouping clauses and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    # Not the unit of a number (offset 5m, 1e3): a name starts after no digit.
    for match in re.finditer(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.9, sum by (le, rule) (rate(remediator_x_bucket{rule=~"a|b"}[5m])))'
    ) == {"remediator_x_bucket"}
    assert metric_names("max by (queue) (a) > 0 and on (x) b offset 5m") == {"a", "b"}
    assert metric_names("label_values(remediator_runs_total, rule)") == {
        "remediator_runs_total",
        "rule",
    }


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs: list[str] = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        exprs.extend(t["expr"] for t in panel.get("targets", []))
    return exprs


def test_every_dashboard_query_names_a_metric_the_service_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported()
    exprs = _dashboard_exprs(dashboard)
    assert len(exprs) >= 15
    for expr in exprs:
        used = metric_names(expr)
        assert used, expr
        assert used <= names, (expr, used - names)
    [rule_variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "rule"]
    assert rule_variable["definition"] == "label_values(remediator_runs_total, rule)"
    assert "remediator_runs_total" in names
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    # What issue 11 asks the dashboard to show.
    shown = {name for expr in exprs for name in metric_names(expr)}
    for wanted in (
        "remediator_runs_total",
        "remediator_time_to_resolve_seconds_bucket",
        "remediator_approvals_total",
        "remediator_guard_refusals_total",
        "remediator_dead_letters",
        "remediator_breaker_open",
        "remediator_component_up",
    ):
        assert wanted in shown, wanted


def test_every_alerting_rule_names_a_metric_the_service_exports() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = exported() | {"up"}
    for rule in rules:
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= names, (rule["alert"], used - names)
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"]
    # Each is tested: promtool's tests name every alert at least once.
    tested = {t["alertname"] for test in yaml.safe_load(TESTS.read_text())["tests"]
              for t in test["alert_rule_test"]}  # fmt: skip
    assert tested == {rule["alert"] for rule in rules}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        server_missing("promtool (apt-get install prometheus)")
    return path


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, cwd=RULES.parent, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stdout}\n{proc.stderr}"


@pytest.mark.e2e
def test_promtool_checks_the_rules() -> None:
    _run(_promtool(), "check", "rules", RULES.name)


@pytest.mark.e2e
def test_promtool_runs_the_rules_tests() -> None:
    _run(_promtool(), "test", "rules", TESTS.name)
