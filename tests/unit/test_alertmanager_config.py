"""alertmanager/: the Alertmanager configuration, the Prometheus alerting rules and their promtool
tests are valid for the real tools, and agree with the remediation rules shipped in rules/.

The tool checks need `promtool` and `amtool` (Debian `prometheus`, `prometheus-alertmanager`; see
hack/e2e/install.sh); the cross-checks between the files are pure."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from receiver.config import load_settings
from receiver.durations import parse_duration
from receiver.matchers import Matcher, parse_matchers
from receiver.model import NamespacePolicy
from receiver.rules.loader import load_rules
from remediations.registry import default_registry
from tests.support.servers import server_missing

ROOT = Path(__file__).resolve().parents[2]
AM_DIR = ROOT / "alertmanager"
AM_CONFIG = AM_DIR / "alertmanager.yml"
PROM_RULES = AM_DIR / "prometheus-rules.yml"
PROM_TESTS = AM_DIR / "tests.yml"
RULES_DIR = ROOT / "rules"
DEPLOYMENT = ROOT / "deploy" / "base" / "deployment.yaml"
RECEIVER = "remediator"
# Alertmanager's --cluster.peer-timeout default, and the replicas the shipped window assumes.
PEER_TIMEOUT_S = 15.0
AM_REPLICAS = 3


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        server_missing(f"{name} (apt-get install prometheus prometheus-alertmanager)")
    return path


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    command = " ".join(argv)
    assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.e2e
def test_promtool_check_rules() -> None:
    _run(_tool("promtool"), "check", "rules", str(PROM_RULES))


@pytest.mark.e2e
def test_promtool_test_rules() -> None:
    _run(_tool("promtool"), "test", "rules", str(PROM_TESTS))


@pytest.mark.e2e
def test_amtool_check_config() -> None:
    _run(_tool("amtool"), "check-config", str(AM_CONFIG))


# --- pure cross-checks --------------------------------------------------------------------------


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _remediation_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.yaml")):
        rules.extend(_load(path)["rules"])
    assert rules, f"no rules in {RULES_DIR}"
    return rules


def _rule_alertnames() -> set[str]:
    """Alert names the shipped remediation rules act on (their `alertname="…"` matchers)."""
    names: set[str] = set()
    for rule in _remediation_rules():
        equal = [m for m in parse_matchers(rule["match"]) if m.name == "alertname" and m.op == "="]
        assert len(equal) == 1, f'rule {rule["name"]} has no single alertname="…" matcher'
        names.add(equal[0].value)
    return names


def _remediator_routes(route: dict[str, Any]) -> list[dict[str, Any]]:
    found = [route] if route.get("receiver") == RECEIVER else []
    for child in route.get("routes") or []:
        found.extend(_remediator_routes(child))
    return found


def _alertname_matcher(route: dict[str, Any]) -> Matcher:
    matchers = parse_matchers(route.get("matchers") or [])
    names = [m for m in matchers if m.name == "alertname"]
    assert len(names) == 1, f"the {RECEIVER} route must have exactly one alertname matcher"
    return names[0]


def _routed_alertnames(matcher: Matcher) -> set[str]:
    """The names an `alertname=~"A|B|C"` (or `alertname="A"`) matcher lists, read literally."""
    if matcher.op == "=":
        return {matcher.value}
    assert matcher.op == "=~", f"unexpected operator in {matcher}"
    assert re.fullmatch(r"[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*", matcher.value), (
        f"keep the alertname matcher a plain list of names: {matcher}"
    )
    return set(matcher.value.split("|"))


def test_every_routed_alert_has_a_rule_and_every_rule_is_routed() -> None:
    config = _load(AM_CONFIG)
    routes = _remediator_routes(config["route"])
    assert len(routes) == 1, f"expected one route to {RECEIVER}, found {len(routes)}"
    matcher = _alertname_matcher(routes[0])
    routed = _routed_alertnames(matcher)
    ruled = _rule_alertnames()
    assert routed - ruled == set(), "routed to the remediator but no rule in rules/ acts on them"
    assert ruled - routed == set(), "rules in rules/ act on them but they are not routed"
    for name in ruled:
        assert matcher.matches({"alertname": name})
    assert routed == {"HighErrorRate", "HighMemoryUsage", "QueueBacklog", "DatabaseConnectionsHigh"}


def test_the_remediator_route_and_receiver_follow_the_delivery_contract() -> None:
    config = _load(AM_CONFIG)
    route = _remediator_routes(config["route"])[0]
    assert route["group_by"] == ["alertname", "namespace", "deployment"]
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert key in route, f"the {RECEIVER} route sets {key} explicitly"
    receivers = {r["name"]: r for r in config["receivers"]}
    webhooks = receivers[RECEIVER]["webhook_configs"]
    assert len(webhooks) == 1
    hook = webhooks[0]
    assert hook["send_resolved"] is True
    assert hook["max_alerts"] == 0
    url = urlsplit(hook["url"])
    assert url.path == "/api/v1/alerts"
    # Alertmanager 0.25 logs webhook URLs: no credentials in them.
    assert url.username is None
    assert url.password is None
    assert url.query == ""
    auth = hook["http_config"]["authorization"]
    assert auth["credentials_file"] == "/etc/alertmanager/remediator-token"
    assert "credentials" not in auth


def test_the_deployed_late_delivery_window_matches_the_shipped_alertmanager_timing() -> None:
    # Alertmanager gives up on a notification max(group_interval, 10s) + peer position x
    # peer_timeout after building it (app/app.go timeoutFunc, v0.35.0): a firing sent that late
    # after its alert resolved is a copy, never a re-fire (README "Re-fires").
    route = _remediator_routes(_load(AM_CONFIG)["route"])[0]
    group_interval = parse_duration(route["group_interval"])
    repeat_interval = parse_duration(route["repeat_interval"])
    deadline = max(group_interval, 10.0) + (AM_REPLICAS - 1) * PEER_TIMEOUT_S
    container = _load(DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    window = env.get("REMEDIATOR_LATE_DELIVERY_WINDOW")
    assert window is not None, "deploy/ must set the window of the shipped group_interval"
    settings = load_settings(None, {"REMEDIATOR_LATE_DELIVERY_WINDOW": window})
    assert settings.late_delivery_window_seconds == deadline
    # A re-fire delivered within the window is acted on at the first re-send after it: the
    # re-send must come after the window, and soon.
    assert deadline < repeat_interval <= 600
    assert repeat_interval % group_interval == 0


def test_prometheus_alerts_are_the_routed_ones() -> None:
    groups = _load(PROM_RULES)["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert alerts == _rule_alertnames()
    for group in groups:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule.get("for"), f"{rule['alert']} needs a for: duration"
            for key in ("summary", "description", "runbook_url"):
                assert rule["annotations"].get(key), f"{rule['alert']} lacks annotation {key}"


def test_alerts_the_promtool_tests_fire_reach_every_rule_of_their_alert_with_a_valid_target() -> (
    None
):
    """The label sets tests.yml asserts Prometheus produces are what the remediation rules match:
    every rule acting on the alert matches them (a runbook that touches two systems is two rules,
    e.g. QueueBacklog's Deployment and Redis queue), and each renders a valid target from them."""
    ruleset = load_rules(RULES_DIR, default_registry(), NamespacePolicy())
    seen: set[str] = set()
    for case in _load(PROM_TESTS)["tests"]:
        for check in case.get("alert_rule_test") or []:
            for expected in check.get("exp_alerts") or []:
                labels = {"alertname": check["alertname"], **expected["exp_labels"]}
                annotations = expected.get("exp_annotations") or {}
                matching = [r.name for r in ruleset.matching(labels)]
                of_alert = [
                    r.name
                    for r in ruleset.rules
                    if any(
                        m.name == "alertname" and m.op == "=" and m.value == labels["alertname"]
                        for m in r.matchers
                    )
                ]
                assert matching == of_alert, f"{labels} is matched by {matching}, not {of_alert}"
                for rule in ruleset.matching(labels):
                    target = rule.render_target(labels, annotations, NamespacePolicy())
                    assert target.name, (rule.name, labels)
                seen.add(check["alertname"])
    assert seen == _rule_alertnames(), "tests.yml fires every alert at least once"
