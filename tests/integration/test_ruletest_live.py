"""``remediator test`` on real PostgreSQL and Redis (the ones the test session runs): fixtures
answer a rule's live conditions, and the expectations of verification, escalation and
announcements pass when right and fail at their line when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.ruletest.run import Report
from receiver.ruletest.world import Servers
from tests.support.ruletest import line_of, play, servers

__all__ = ["servers"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


LIVE_RULES = """\
rules:
  - name: rollback-or-scale
    match: ['alertname="Errors"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_undo
        when: {rolled_out_within: 30m}
        approval: never
      - action: kubernetes.scale
        when: {not_rolled_out_within: 30m}
        params: {delta: 2, max: 10}
    verify: {resolved_within: 10m, settle: 30m}
    on_failed:
      - action: kubernetes.rollout_restart
    notify: {channel: oncall, events: [started, finished, verification_failed]}
"""


LIVE = """\
rule_files: [live.yaml]
tests:
  - name: the rollout fixture decides; a recurrence escalates
    alerts:
      web: {labels: {alertname: Errors, namespace: shop, deployment: web}}
      api: {labels: {alertname: Errors, namespace: shop, deployment: api}}
      db: {labels: {alertname: Errors, namespace: shop, deployment: db}}
    fixtures:
      - {target: Deployment/shop/web, facts: {rollout: {revision: 7, created_at: -10m}}}
      - {target: Deployment/shop/api, facts: {rollout: {revision: 3, created_at: -2h}}}
      - {target: Deployment/shop/db, facts: {rollout: {error: deployments.apps db not found}}}
    timeline:
      - {at: 0s, firing: web}
      - {at: 1m, firing: api}
      - {at: 2m, firing: db}
      - {at: 5m, resolved: web}
      - {at: 6m, resolved: api}
      - {at: 20m, refire: api}
    expect:
      - at: 34m59s
        runs:
          - {alert: web, outcome: verifying}
          - {alert: api, outcome: failed}
          - {alert: api, outcome: failed}
      - at: 40m
        runs:
          - alert: web
            outcome: verified
            verify_result: verified
            steps: [kubernetes.rollout_undo: simulated]
            announced: [started, finished]
          - alert: api
            outcome: failed
            verify_result: recurred
            steps: [kubernetes.scale: simulated]
            on_failed: [kubernetes.rollout_restart: simulated]
            announced: [started, finished, verification_failed]
          - {alert: api, verify_result: not_resolved, reason: did not resolve within 600s}
        skips: [{alert: db, reason: "rolled_out_within 30m: cannot tell (deployments.apps db"}]
"""


async def play_live(servers: Servers, tmp_path: Path, text: str) -> tuple[Report, list[str]]:
    return await play(servers, tmp_path, text, ("live.yaml", LIVE_RULES))


async def test_fixtures_answer_live_conditions_and_escalation_is_checked(
    servers: Servers, tmp_path: Path
) -> None:
    report, lines = await play_live(servers, tmp_path, LIVE)
    assert report.exit_code == 0, "\n".join(lines)


@pytest.mark.parametrize(
    ("change", "marker", "message"),
    [
        pytest.param(
            ("created_at: -10m}", "created_at: -40m}"),
            "steps: [kubernetes.rollout_undo: simulated]",
            "steps[0] (kubernetes.scale simulated): expected action kubernetes.rollout_undo",
            id="fact-decides",
        ),
        pytest.param(
            ("verify_result: recurred", "verify_result: verified"),
            "verify_result: verified\n            steps: [kubernetes.scale",
            "verify_result: expected verified, got recurred",
            id="verify-result",
        ),
        pytest.param(
            ("on_failed: [kubernetes.rollout_restart: simulated]", "on_failed: []"),
            "on_failed: []",
            "on_failed: expected 0 step(s), found 1:\n    1. on_failed kubernetes.rollout_restart",
            id="on-failed",
        ),
        pytest.param(
            ("announced: [started, finished]\n", "announced: [started]\n"),
            "announced: [started]",
            "announced: expected ['started'], got ['started', 'finished']",
            id="announced",
        ),
    ],
)
async def test_the_expectations_of_verification_and_announcements_fail_at_their_line(
    servers: Servers, tmp_path: Path, change: tuple[str, str], marker: str, message: str
) -> None:
    old, new = change
    assert old in LIVE
    text = LIVE.replace(old, new, 1)
    report, _ = await play_live(servers, tmp_path, text)
    [result] = report.results
    first_line = marker.split("\n")[0]
    expected_line = line_of(text, first_line) if text.count(first_line) == 1 else None
    failures = [str(f) for f in result.failures]
    assert any(message in f for f in failures), failures
    if expected_line is not None:
        where = f"{tmp_path / 't.yaml'}:{expected_line}: "
        assert any(f.startswith(where) and message in f for f in failures), (where, failures)


EARLY = """\
rule_files: [live.yaml]
tests:
  - name: a resolution dated before the step acted is not credited
    alerts:
      web: {labels: {alertname: Errors, namespace: shop, deployment: web}}
    fixtures:
      - {target: Deployment/shop/web, facts: {rollout: {revision: 7, created_at: -10m}}}
    timeline:
      - {at: 1m, firing: web}
      - {at: 2m, resolved: web, ends_at: 30s}
    expect:
      - at: 3m
        runs:
          - {alert: web, outcome: succeeded, verify_result: resolved_before_action}
"""


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        ("resolved_before_action", None),
        ("verified", "verify_result: expected verified, got resolved_before_action"),
    ],
)
async def test_a_rule_test_can_expect_a_resolution_before_the_action(
    servers: Servers, tmp_path: Path, expected: str, message: str | None
) -> None:
    """The firing is taken at 1m, its alert having resolved at 30s (its endsAt): the run
    succeeded, and its verification credits nothing to the rule."""
    text = EARLY.replace("verify_result: resolved_before_action", f"verify_result: {expected}")
    report, lines = await play_live(servers, tmp_path, text)
    if message is None:
        assert report.exit_code == 0, "\n".join(lines)
        return
    [result] = report.results
    failures = [str(f) for f in result.failures]
    assert any(message in f for f in failures), failures
