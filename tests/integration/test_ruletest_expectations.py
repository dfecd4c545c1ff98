"""``remediator test`` on real PostgreSQL and Redis (the ones the test session runs): every kind
of expectation, when wrong, fails at the line that states it, saying what was expected and what
happened; a decision with nothing to decide fails and the test goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.ruletest.world import Servers
from tests.support.ruletest import PASSING, line_of, play, servers

__all__ = ["servers"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


# (what to change, the line it fails at (a text on that line), what the failure says)
MUTATIONS = [
    pytest.param(
        ("          - {alert: q, refused_by: cooldown, reason: in cooldown}\n", ""),
        "      - runs:",
        "at the end: expected 1 run(s), found 2:\n    1. scale-out on Deployment/shop/worker, "
        "alert q, created at 0s: verified; steps: kubernetes.scale simulated",
        id="runs-count",
    ),
    pytest.param(
        ("          - rule: scale-out", "          - rule: other-rule"),
        "- rule: other-rule",
        "run 1 (scale-out on Deployment/shop/worker, alert q, created at 0s: verified; "
        "steps: kubernetes.scale simulated, kubernetes.set_env simulated, on_resolved "
        "kubernetes.scale simulated): rule: expected other-rule, got scale-out",
        id="rule",
    ),
    pytest.param(
        ("target: Deployment/shop/worker", "target: Deployment/shop/web"),
        "target: Deployment/shop/web",
        "target: expected Deployment/shop/web, got Deployment/shop/worker",
        id="target",
    ),
    pytest.param(
        ("            alert: q\n", "            alert: other\n"),
        "            alert: other",
        "alert: expected other, got q",
        id="alert",
    ),
    pytest.param(
        ("outcome: verified", "outcome: verifying"),
        "outcome: verifying",
        "outcome: expected verifying, got verified",
        id="outcome",
    ),
    pytest.param(
        ("refused_by: cooldown", "refused_by: rate"),
        "refused_by: rate",
        "run 2 (scale-out on Deployment/shop/worker, alert q, created at 6m: refused by "
        "cooldown (in cooldown after run",
        id="refused_by",
    ),
    pytest.param(
        ("reason: in cooldown}", "reason: maintenance}"),
        "reason: maintenance",
        "reason: expected it to say 'maintenance', it says 'in cooldown after run",
        id="reason",
    ),
    pytest.param(
        ("              - kubernetes.set_env: simulated\n", ""),
        "            steps:",
        "steps: expected 1 step(s), found 2:\n    1. kubernetes.scale simulated\n"
        "    2. kubernetes.set_env simulated",
        id="steps-count",
    ),
    pytest.param(
        ("- kubernetes.set_env: simulated", "- kubernetes.rollout_restart: simulated"),
        "- kubernetes.rollout_restart: simulated",
        "steps[1] (kubernetes.set_env simulated): expected action kubernetes.rollout_restart",
        id="step-action",
    ),
    pytest.param(
        ("- kubernetes.set_env: simulated", "- kubernetes.set_env: awaiting_approval"),
        "- kubernetes.set_env: awaiting_approval",
        "steps[1] (kubernetes.set_env simulated): expected outcome awaiting_approval",
        id="step-outcome",
    ),
    pytest.param(
        ("message: by +2}", "message: by 3}"),
        "message: by 3",
        "steps[0] (kubernetes.scale simulated): expected its message to say 'by 3', it says "
        "'simulated: scale Deployment shop/worker by +2",
        id="step-message",
    ),
    pytest.param(
        ("on_resolved: [kubernetes.scale: simulated]", "on_resolved: []"),
        "on_resolved: []",
        "on_resolved: expected 0 step(s), found 1:\n    1. on_resolved kubernetes.scale simulated",
        id="on-resolved",
    ),
    pytest.param(
        (
            "action: kubernetes.set_env, state: pending}]",
            "action: kubernetes.set_env, state: pending}, {state: pending}]",
        ),
        "        approvals: [{rule: scale-out",
        "at 0s: expected 2 approval(s), found 1:\n    1. kubernetes.set_env of scale-out on "
        "Deployment/shop/worker, alert q, asked at 0s: pending",
        id="approvals-count",
    ),
    pytest.param(
        ("state: approved, by: alice}", "state: approved, by: bob}"),
        "by: bob",
        "approval 1 (kubernetes.set_env of scale-out on Deployment/shop/worker, alert q, asked "
        "at 0s: approved by alice): by: expected bob, got alice",
        id="approval-by",
    ),
    pytest.param(
        ("state: approved, by: alice}", "state: rejected, by: alice}"),
        "state: rejected",
        "state: expected rejected, got approved",
        id="approval-state",
    ),
    pytest.param(
        ("approvals: [{rule: scale-out, alert: q,", "approvals: [{rule: other-rule, alert: q,"),
        "rule: other-rule",
        "rule: expected other-rule, got scale-out",
        id="approval-rule",
    ),
    pytest.param(
        ("rule: scale-out, alert: q, action", "rule: scale-out, alert: other, action"),
        "alert: other, action",
        "alert: expected other, got q",
        id="approval-alert",
    ),
    pytest.param(
        ("action: kubernetes.set_env, state", "action: kubernetes.scale, state"),
        "action: kubernetes.scale, state",
        "action: expected kubernetes.scale, got kubernetes.set_env",
        id="approval-action",
    ),
    pytest.param(
        ("reason: no rule matches}", "reason: invalid target}"),
        "reason: invalid target",
        "at the end: expected alert other skipped saying 'invalid target'; its skips:\n"
        "    1. every rule: no rule matches (event at 0s)",
        id="skips",
    ),
    pytest.param(
        ("    expect:\n", "    expect:\n      - {at: 1m, no_runs: true}\n"),
        "no_runs: true",
        "at 1m: expected no runs, found 1:\n    1. scale-out on Deployment/shop/worker",
        id="no-runs",
    ),
    pytest.param(
        ("approve: {by: alice}", "approve: {by: alice, fails: expired}"),
        "fails: expired",
        "approve: expected it to be refused ('expired'), it was taken",
        id="decision-fails",
    ),
    pytest.param(
        (
            "      - {at: 5m, resolved: q}",
            "      - {at: 3m, reject: {by: bob}}\n      - {at: 5m, resolved: q}",
        ),
        "reject: {by: bob}",
        "reject: refused: this step was already approved by alice",
        id="decision-refused",
    ),
    pytest.param(
        ("approve: {by: alice}", "approve: {by: alice, rule: other-rule}"),
        "rule: other-rule}",
        "approve: no approval was asked for (rule other-rule)",
        id="decision-nothing-to-decide",
    ),
]


@pytest.mark.parametrize(("change", "marker", "message"), MUTATIONS)
async def test_each_kind_of_expectation_fails_at_its_line_when_wrong(
    servers: Servers, tmp_path: Path, change: tuple[str, str], marker: str, message: str
) -> None:
    old, new = change
    assert old in PASSING
    text = PASSING.replace(old, new, 1)
    report, lines = await play(servers, tmp_path, text)
    assert report.exit_code == 1
    [result] = report.results
    assert not result.passed
    expected_line = line_of(text, marker)
    failures = [str(f) for f in result.failures]
    where = f"{tmp_path / 't.yaml'}:{expected_line}: "
    assert any(f.startswith(where) and message in f for f in failures), (where, failures)
    assert "  FAIL  scales out, asks for the env change, scales back" in lines[1]


async def test_a_decision_with_nothing_to_decide_fails_and_the_test_goes_on(
    servers: Servers, tmp_path: Path
) -> None:
    """An ``approve`` that finds no pending approval is a failure at its line; the timeline
    and the expectations after it are still played and checked (here: the approval is never
    approved, and the resolution cancels it, which the end-of-test expectation catches)."""
    text = PASSING.replace("approve: {by: alice}", "approve: {by: alice, rule: other-rule}")
    report, _ = await play(servers, tmp_path, text)
    [result] = report.results
    failures = [str(f) for f in result.failures]
    t_yaml = tmp_path / "t.yaml"
    decision = f"{t_yaml}:{line_of(text, 'rule: other-rule}')}: approve: no approval was asked for"
    assert any(f.startswith(decision) for f in failures), failures
    at_end = f"{t_yaml}:{line_of(text, 'state: approved, by: alice}')}: "
    assert any(
        f.startswith(at_end) and "state: expected approved, got cancelled" in f for f in failures
    ), failures
