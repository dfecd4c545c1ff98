"""A run keeps the on_resolved steps it was planned with: renaming, removing or editing its
rule while the run is open does not change what it undoes when its alert resolves. A run
created before the steps were kept (``runs.on_resolved`` NULL) is undone from its rule as
loaded, as before. A reload that removes a rule names its open runs in a warning.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): each step is a
counter bump on the peer, so "the undo ran" is counted by a server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from receiver.config import Settings
from receiver.engine import RULE_GONE
from receiver.model import RunOutcome, StepPlan, Target
from receiver.reloads import RuleReloads
from receiver.rules.loader import RuleHolder
from receiver.store import Store
from remediations.registry import default_registry
from tests.support.approvals import MakeApprovalEnv, poke_labels
from tests.support.events import alert_event

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULE = """
rules:
  - name: {name}
    match: ['alertname="Poke"']
    target:
      kind: Deployment
      namespace: "{{{{ labels.namespace }}}}"
      name: "{{{{ labels.deployment }}}}"
    steps:
      - action: test.poke
        approval: never
{undo}"""

POKE_BACK = """    on_resolved:
      - action: test.poke
        approval: never
"""

# An edited undo: at the counter's value already, it is a noop that changes nothing.
NOOP_BACK = """    on_resolved:
      - action: test.poke
        params: {up_to: 0}
        approval: never
"""

# The same in the shipped registry (a reload reads the rule files as the service does).
SCALE = """
rules:
  - name: {name}
    match: ['alertname="Backlog"']
    target: {{kind: Deployment, namespace: shop, name: web}}
    steps:
      - action: kubernetes.scale
        params: {{delta: 2, max: 10}}
{undo}"""

SCALE_BACK = """    on_resolved:
      - action: kubernetes.scale
        params: {restore: true, max: 10}
"""

OTHER = """
rules:
  - name: other
    match: ['alertname="Other"']
    target: {kind: Deployment, namespace: shop, name: other}
    steps:
      - action: test.poke
        approval: never
"""


@pytest.mark.parametrize(
    "reloaded",
    [
        pytest.param(RULE.format(name="poke-v2", undo=POKE_BACK), id="renamed"),
        pytest.param(OTHER, id="removed"),
        pytest.param(RULE.format(name="poke", undo=NOOP_BACK), id="edited"),
        pytest.param(RULE.format(name="poke", undo=""), id="undo-dropped"),
    ],
)
async def test_an_open_run_undoes_what_it_was_planned_with(
    approval_env: MakeApprovalEnv, reloaded: str
) -> None:
    env = await approval_env(rules=RULE.format(name="poke", undo=POKE_BACK))
    await env.harness.deliver(poke_labels())
    assert env.peer.pokes == 1
    env.harness.reload_rules(reloaded)
    await env.harness.deliver(poke_labels(), status="resolved")
    run = await env.harness.only_run()
    assert [(s.phase, s.action, s.outcome) for s in run.steps] == [
        ("run", "test.poke", "ok"),
        ("resolve", "test.poke", "ok"),
    ]
    assert env.peer.pokes == 2
    assert run.rule == "poke"
    assert run.resolved_at is not None


async def test_a_run_kept_without_its_undo_falls_back_to_its_rule(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env(rules=RULE.format(name="poke", undo=POKE_BACK))
    await env.harness.deliver(poke_labels())
    run = await env.harness.only_run()
    # As a run created before migration 0025 is stored: nothing kept.
    await env.harness.store._pool.execute(
        "UPDATE runs SET on_resolved = NULL WHERE id = $1::uuid", run.id
    )
    env.harness.reload_rules(RULE.format(name="poke-v2", undo=POKE_BACK))
    await env.harness.deliver(poke_labels(), status="resolved")
    run = await env.harness.only_run()
    assert [s.phase for s in run.steps] == ["run"]
    assert env.peer.pokes == 1
    event = await env.harness.store._pool.fetchval(
        "SELECT skips::text FROM alert_events WHERE status = 'resolved'"
    )
    assert RULE_GONE in event


async def test_a_reload_that_removes_a_rule_names_its_open_runs(
    store: Store, tmp_path: Path
) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(SCALE.format(name="poke", undo=SCALE_BACK))
    holder = RuleHolder(rules_dir, default_registry(), Settings().namespace_policy())
    web = Target("Deployment", "shop", "web")
    kept = await store.create_run(
        rule="poke",
        event=alert_event(1, "a" * 16),
        target=web,
        dry_run=False,
        outcome=RunOutcome.VERIFYING,
        on_resolved=[StepPlan(0, "kubernetes.scale", {"restore": True}, False)],
    )
    # Created before the undo was kept with the run (migration 0025): it loses it.
    legacy = await store.create_run(
        rule="poke", event=alert_event(2, "b" * 16), target=web, dry_run=False
    )
    # Refused: nothing to undo, not named.
    await store.create_run(
        rule="poke",
        event=alert_event(3, "c" * 16),
        target=web,
        dry_run=False,
        outcome=RunOutcome.REFUSED,
    )
    reloads = RuleReloads(
        holder,
        structlog.get_logger("test"),
        store.append_audit,
        asyncio.get_running_loop(),
        store.open_runs,
    )
    (rules_dir / "rules.yaml").write_text(SCALE.format(name="poke-v2", undo=SCALE_BACK))
    with capture_logs() as logs:
        await asyncio.to_thread(lambda: reloads(holder.reload()))
        await reloads.drain()
    # The reload stands: the renamed rule is in force.
    assert [r.name for r in holder.current.rules] == ["poke-v2"]
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert warning["rule"] == "poke"
    assert warning["open_runs"] == [kept, legacy]
    assert warning["undo_lost"] == [legacy]
    assert "undo what they were planned with" in warning["event"]
    # A reload that removes nothing says nothing of the kind.
    (rules_dir / "rules.yaml").write_text(SCALE.format(name="poke-v2", undo=""))
    with capture_logs() as logs:
        reloads(holder.reload())
        await reloads.drain()
    assert [e for e in logs if e["log_level"] == "warning"] == []
