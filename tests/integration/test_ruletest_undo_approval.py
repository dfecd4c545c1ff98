"""``remediator test`` shows an on_resolved step that needs an approval as it runs in the
service: awaiting its approval when the alert resolves, simulated once approved, rejected (and
not simulated) when rejected. Real PostgreSQL and Redis, as in test_ruletest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.ruletest.world import Servers
from tests.support.ruletest import play, servers

__all__ = ["servers"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """\
rules:
  - name: pool-down-then-up
    match: ['alertname="DBPool"']
    target: {kind: Deployment, namespace: shop, name: api}
    steps:
      - action: kubernetes.set_env
        params: {container: app, name: DB_POOL_SIZE, value: "5"}
        approval: never
    on_resolved:
      - action: kubernetes.set_env
        params: {container: app, name: DB_POOL_SIZE, value: "20"}
        approval: required
"""

TESTS = """\
rule_files: [rules.yaml]
tests:
  - name: the undo waits, then runs once approved
    alerts:
      a: {labels: {alertname: DBPool}}
    timeline:
      - {at: 0s, firing: a}
      - {at: 5m, resolved: a}
      - {at: 6m, approve: {by: alice}}
    expect:
      - at: 5m
        runs:
          - rule: pool-down-then-up
            steps: [kubernetes.set_env: simulated]
            on_resolved: [kubernetes.set_env: awaiting_approval]
        approvals: [{action: kubernetes.set_env, state: pending}]
      - runs:
          - rule: pool-down-then-up
            steps: [kubernetes.set_env: simulated]
            on_resolved: [kubernetes.set_env: simulated]
        approvals: [{state: approved, by: alice}]
  - name: a rejected undo is not done
    alerts:
      a: {labels: {alertname: DBPool}}
    timeline:
      - {at: 0s, firing: a}
      - {at: 5m, resolved: a}
      - {at: 6m, reject: {by: alice}}
    expect:
      - runs:
          - rule: pool-down-then-up
            steps: [kubernetes.set_env: simulated]
            on_resolved: [kubernetes.set_env: rejected]
        approvals: [{state: rejected, by: alice}]
"""


async def test_the_rule_test_shows_the_undo_awaiting_its_approval(
    servers: Servers, tmp_path: Path
) -> None:
    report, lines = await play(servers, tmp_path, TESTS, ("rules.yaml", RULES))
    assert [r.passed for r in report.results] == [True, True], lines
