"""``remediator test`` played in process, for its tests: the real PostgreSQL and Redis the test
session runs (``servers``, one set a module), a rule file (``RULES``) and a test file that
passes against it (``PASSING``), ``play``/``play_file`` to load and play a test file, and
``line_of`` to find the line an expectation is stated on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.ruletest.run import Report, load_files, play_files
from receiver.ruletest.world import Servers
from remediations.registry import default_registry
from tests.support.postgres import PostgresServer
from tests.support.redis import RedisServer

RULES = """\
rules:
  - name: scale-out
    match: ['alertname="Backlog"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.scale
        params: {delta: 2, max: 10}
      - action: kubernetes.set_env
        params: {container: app, name: WORKERS, value: "8"}
    verify: {resolved_within: 30m}
    guards: {cooldown: 10m}
    on_resolved:
      - action: kubernetes.scale
        params: {restore: true, max: 10}
  - name: other-rule
    match: ['alertname="Never"']
    target: {kind: Deployment, namespace: shop, name: never}
    steps:
      - action: kubernetes.rollout_restart
"""


PASSING = """\
rule_files: [rules.yaml]
tests:
  - name: scales out, asks for the env change, scales back
    alerts:
      q: {labels: {alertname: Backlog, namespace: shop, deployment: worker}}
      other: {labels: {alertname: Unrelated}}
    timeline:
      - {at: 0s, firing: q}
      - {at: 0s, firing: other}
      - {at: 2m, approve: {by: alice}}
      - {at: 5m, resolved: q}
      - {at: 6m, firing: q}
    expect:
      - at: 0s
        approvals: [{rule: scale-out, alert: q, action: kubernetes.set_env, state: pending}]
      - runs:
          - rule: scale-out
            target: Deployment/shop/worker
            alert: q
            outcome: verified
            steps:
              - {action: kubernetes.scale, outcome: simulated, message: by +2}
              - kubernetes.set_env: simulated
            on_resolved: [kubernetes.scale: simulated]
          - {alert: q, refused_by: cooldown, reason: in cooldown}
        approvals: [{state: approved, by: alice}]
        skips: [{alert: other, reason: no rule matches}]
"""


@pytest.fixture(scope="module")
async def servers(pg_server: PostgresServer, redis_server: RedisServer) -> AsyncIterator[Servers]:
    redis_server.ensure_running()
    async with Servers.start(
        database_url=pg_server.url("postgres"), redis_url=redis_server.url
    ) as started:
        yield started


async def play_file(servers: Servers, path: Path) -> tuple[Report, list[str]]:
    """Load the test file at ``path`` (it must load without errors) and play it: the report
    and the lines it printed."""
    registry = default_registry()
    files, errors = load_files([path], registry)
    assert errors == [], [str(e) for e in errors]
    lines: list[str] = []
    report = await play_files(files, servers, registry, lines.append)
    return report, lines


async def play(
    servers: Servers, tmp_path: Path, text: str, rules: tuple[str, str] = ("rules.yaml", RULES)
) -> tuple[Report, list[str]]:
    """Play the test file ``text`` next to the rule file ``rules`` (its name and text)."""
    name, rules_text = rules
    (tmp_path / name).write_text(rules_text)
    (tmp_path / "t.yaml").write_text(text)
    return await play_file(servers, tmp_path / "t.yaml")


def line_of(text: str, marker: str) -> int:
    """The number (from 1) of the one line of ``text`` that holds ``marker``."""
    [line] = [i for i, row in enumerate(text.splitlines(), 1) if marker in row]
    return line
