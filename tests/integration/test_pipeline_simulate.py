"""The step runner's simulation mode (``PipelineSettings(simulate=True)``, what ``remediator
test`` plays rules with) and the fixtures hook (``Deps.fixtures``), through the real pipeline,
store and Redis: no action is called, every system counts as configured (so a risky step waits
for approval as in production, where the dry-run service would run it dry), and a fixture
scripts a step's end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import structlog

from receiver.approvals.desk import ApprovalDesk
from receiver.approvals.policy import ApproverPolicy, Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.guards.redis_guards import Guards
from receiver.intake import Intake
from receiver.model import NamespacePolicy, RunOutcome
from receiver.pipeline import Pipeline, PipelineSettings
from receiver.pipeline.context import STEP_OUTCOME_FACT
from receiver.rules.loader import RuleHolder
from receiver.store import RunRecord, Store
from receiver.telemetry import Metrics
from remediations.base import Clients
from remediations.registry import default_registry
from remediations.targets import Target
from tests.support.payloads import alert, notification

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """
rules:
  - name: pool
    match: ['alertname="Conns"']
    target: {kind: Deployment, namespace: shop, name: orders}
    steps:
      - action: kubernetes.rollout_restart
      - action: kubernetes.set_env
        params: {container: app, name: DB_POOL_SIZE, value: "5"}
    verify: {resolved_within: 10m}
"""
LABELS = {"alertname": "Conns"}
ORDERS = Target("Deployment", "shop", "orders")


class ScriptedFacts:
    """A ``FactSource`` of the test's own: (kind, target key) -> value."""

    def __init__(self, facts: dict[tuple[str, str], Any]) -> None:
        self.facts = facts
        self.asked: list[tuple[str, str]] = []

    async def get(self, kind: str, target: Target) -> Any | None:
        self.asked.append((kind, target.key))
        return self.facts.get((kind, target.key))


@pytest.fixture
async def play(
    store: Store, redis_client: redis.asyncio.Redis, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    intakes: list[Intake] = []

    async def run(*, simulate: bool, facts: ScriptedFacts | None = None) -> Any:
        (tmp_path / "rules.yaml").write_text(RULES)
        registry = default_registry()
        policy = NamespacePolicy()
        desk = ApprovalDesk(
            store, policy=ApproverPolicy.of(default=["alice"]), log=structlog.get_logger()
        )
        pipeline = Pipeline(
            store=store,
            guards=Guards(redis_client, policy),
            rules=RuleHolder(tmp_path, registry, policy),
            registry=registry,
            # No client at all: outside a simulation every step runs dry.
            clients=Clients(),
            settings=PipelineSettings(dry_run=False, policy=policy, simulate=simulate),
            metrics=Metrics(),
            approvals=desk,
            fixtures=facts,
        )
        intake = Intake(store, settle=pipeline.settled_at_intake)
        intakes.append(intake)
        await intake.accept(notification(alert(LABELS)))
        await drain(store, pipeline)
        rows, _ = await store.list_runs()
        [listed] = rows
        found = await store.get_run(listed.id)
        assert found is not None
        return found, desk, pipeline

    yield run
    for intake in intakes:
        await intake.drain()


async def drain(store: Store, pipeline: Pipeline) -> None:
    while True:
        events = await store.claim_events("t", 10, 30.0)
        for claimed in events:
            assert (await pipeline(claimed.event)).is_done
            await store.complete_event(claimed.event.id, "t", claimed.attempts)
        jobs = await store.claim_jobs("t", 10, 30.0)
        for job in jobs:
            assert (await pipeline.run_job(job)).is_done
            await store.complete_job(job.id, "t", job.attempts)
        if not events and not jobs:
            return


def outcomes(run: RunRecord) -> list[tuple[str, str]]:
    return [(s.action, s.outcome) for s in run.steps]


async def test_without_simulation_the_unconfigured_steps_run_dry_and_ask_nobody(play: Any) -> None:
    run, _, _ = await play(simulate=False)
    assert run.outcome is RunOutcome.DRY_RUN
    assert outcomes(run) == [
        ("kubernetes.rollout_restart", "dry_run"),
        ("kubernetes.set_env", "dry_run"),
    ]


async def test_a_simulated_run_records_steps_without_acting_and_gates_approval(
    play: Any, store: Store
) -> None:
    run, desk, pipeline = await play(simulate=True)
    # No Kubernetes client: had run() or preview() been called, they would have been refused.
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    assert not run.dry_run
    assert outcomes(run) == [
        ("kubernetes.rollout_restart", "simulated"),
        ("kubernetes.set_env", "awaiting_approval"),
    ]
    assert run.steps[0].message.startswith("simulated: ")
    [approval] = await store.list_approvals()
    assert approval.plan["summary"].startswith("simulated: ")

    await desk.decide(approval.id, Decision.APPROVE, Identity("alice", "test"), Origin(Channel.API))
    await drain(store, pipeline)
    after = await store.get_run(run.id)
    assert after is not None
    # The approved preview hashed the same when the step was about to run: it ran (simulated).
    assert after.outcome is RunOutcome.VERIFYING
    assert outcomes(after) == [
        ("kubernetes.rollout_restart", "simulated"),
        ("kubernetes.set_env", "simulated"),
    ]


async def test_a_fact_scripts_how_a_simulated_step_ends(play: Any) -> None:
    facts = ScriptedFacts(
        {
            (f"{STEP_OUTCOME_FACT}:kubernetes.rollout_restart", ORDERS.key): {
                "outcome": "failed",
                "message": "the API server said 503",
            }
        }
    )
    run, _, _ = await play(simulate=True, facts=facts)
    assert (f"{STEP_OUTCOME_FACT}:kubernetes.rollout_restart", ORDERS.key) in facts.asked
    assert run.outcome is RunOutcome.FAILED
    assert outcomes(run) == [
        ("kubernetes.rollout_restart", "failed"),
        ("kubernetes.set_env", "not_run"),  # stopped by the failure: it will never run
    ]
    assert run.steps[0].message == "the API server said 503"


async def test_a_scripted_refusal_refuses_the_preview_so_nobody_is_asked(
    play: Any, store: Store
) -> None:
    facts = ScriptedFacts(
        {
            (f"{STEP_OUTCOME_FACT}:kubernetes.set_env", ORDERS.key): {
                "outcome": "refused",
                "message": "no container app",
            }
        }
    )
    run, _, _ = await play(simulate=True, facts=facts)
    assert run.outcome is RunOutcome.REFUSED
    assert outcomes(run) == [
        ("kubernetes.rollout_restart", "simulated"),
        ("kubernetes.set_env", "refused"),
    ]
    assert "no container app" in run.steps[1].message
    assert await store.list_approvals() == []
