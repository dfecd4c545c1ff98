"""The real service, put together for one test on a simulated clock.

Everything is the production code: the intake (``receiver.intake``), the pipeline with its
stages, the guards' Lua on Redis, the store on PostgreSQL, the approval desk. Three things
differ, and only these:

- the clock: one ``SimClock`` is the pipeline's, the guards' (``Guards(clock=...)``) and the
  store's (``Store.connect(clock=...)``, ``remediator_now()`` in its SQL);
- the steps: ``PipelineSettings(simulate=True)`` records each step as it would run, without
  calling its action, with every system counted as configured;
- live state: ``FixtureFacts`` answers from the test's fixtures what a probe would read.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from receiver.alertmanager import parse_rfc3339
from receiver.approvals.desk import ApprovalDesk
from receiver.approvals.policy import ApproverPolicy
from receiver.facts import FactKind, Rollout
from receiver.guards.redis_guards import Guards
from receiver.intake import Intake
from receiver.pipeline import Pipeline, PipelineSettings
from receiver.pipeline.context import STEP_OUTCOME_FACT
from receiver.rules.loader import RuleHolder
from receiver.rules.model import RuleSet
from receiver.ruletest.files import SimSettings
from receiver.ruletest.spec import FixtureSpec, RolloutFact
from receiver.store import Store
from receiver.telemetry import Metrics
from remediations.base import ActionError, Clients, Registry
from remediations.targets import Target

__all__ = ["FixtureFacts", "SimClock", "Simulation", "simulation"]


class SimClock:
    """The simulated time: moved only by the player, never by real time passing."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def __call__(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        """Move to ``at``; the clock never goes back."""
        self._now = max(self._now, at)


class FixtureFacts:
    """A test's fixtures as the pipeline's ``FactSource``: (kind of fact, target key) ->
    value, what the fact reader would have read (a ``receiver.facts.Rollout``, ...) and how a
    simulated step ends (the fact ``step_outcome:<action>``). A fact the probe could not read
    raises ActionError with the fixture's ``error``, as a probe would."""

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._facts: dict[tuple[str, str], Any] = {}

    def apply(self, fixtures: Iterable[FixtureSpec]) -> None:
        """Set what the fixtures state (later ones replace earlier ones)."""
        for fixture in fixtures:
            rollout = fixture.facts.rollout
            if rollout is not None:
                key = (str(FactKind.ROLLOUT), fixture.target)
                self._facts[key] = self._rollout(rollout, fixture.target)
            for action, script in fixture.steps.items():
                self._facts[(f"{STEP_OUTCOME_FACT}:{action}", fixture.target)] = {
                    "outcome": script.outcome,
                    "message": script.message,
                }

    def _rollout(self, fact: RolloutFact, target: str) -> Rollout | ActionError:
        if fact.error is not None:
            return ActionError(fact.error)
        assert fact.revision is not None
        assert fact.created_at is not None
        name = target.rsplit("/", 1)[-1]
        return Rollout(
            revision=fact.revision,
            replicaset=fact.replicaset or f"{name}-{fact.revision}",
            created_at=self._time(fact.created_at),
            known=fact.known,
            bounded=fact.bounded,
            no_rollback=fact.nothing_to_roll_back or "",
        )

    def _time(self, value: str | float) -> datetime:
        if isinstance(value, str):
            return parse_rfc3339(value)
        return self._start + timedelta(seconds=value)

    async def get(self, kind: str, target: Target) -> Any | None:
        value = self._facts.get((kind, target.key))
        if isinstance(value, ActionError):
            raise value
        return value


@dataclass(slots=True)
class Simulation:
    """The service's parts for one test, sharing one simulated clock."""

    clock: SimClock
    store: Store
    guards: Guards
    desk: ApprovalDesk
    facts: FixtureFacts
    pipeline: Pipeline
    intake: Intake


@contextlib.asynccontextmanager
async def simulation(
    *,
    database_url: str,
    redis_client: Any,
    key_prefix: str,
    ruleset: RuleSet,
    registry: Registry,
    settings: SimSettings,
    approvers: Iterable[str],
) -> AsyncIterator[Simulation]:
    """The parts wired as ``receiver.service`` wires them, on the given database (migrated)
    and Redis keys. ``approvers``: the names the test decides approvals as (all allowed)."""
    clock = SimClock(settings.start)
    store = await Store.connect(
        database_url, min_size=1, max_size=4, run_migrations=False, clock=clock
    )
    intake: Intake | None = None
    try:
        store.late_delivery_window_s = settings.late_delivery_window_s
        # A test's notifications arrive when it sends them: no resolution is delivered late,
        # so a verification ends at its deadline (no delivery grace, README "Verification").
        store.verify_grace_s = 0.0
        guards = Guards(
            redis_client,
            settings.policy,
            replace(settings.guards, key_prefix=key_prefix),
            clock=clock,
        )
        log = structlog.get_logger("remediator.ruletest")
        desk = ApprovalDesk(
            store,
            policy=ApproverPolicy.of(default=approvers),
            ttl_s=settings.approval_ttl_s,
            log=log,
        )
        facts = FixtureFacts(settings.start)
        pipeline = Pipeline(
            store=store,
            guards=guards,
            rules=RuleHolder.fixed(ruleset, registry, settings.policy),
            registry=registry,
            clients=Clients(),
            settings=PipelineSettings(dry_run=False, policy=settings.policy, simulate=True),
            metrics=Metrics(),
            clock=clock,
            approvals=desk,
            fixtures=facts,
        )
        intake = Intake(store, settle=pipeline.settled_at_intake)
        yield Simulation(clock, store, guards, desk, facts, pipeline, intake)
    finally:
        if intake is not None:
            await intake.drain()
        await store.close()
