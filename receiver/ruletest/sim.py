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
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from receiver.approvals.desk import ApprovalDesk
from receiver.approvals.policy import ApproverPolicy
from receiver.guards.redis_guards import Guards
from receiver.intake import Intake
from receiver.pipeline import Pipeline, PipelineSettings
from receiver.pipeline.context import STEP_OUTCOME_FACT
from receiver.rules.loader import RuleHolder
from receiver.rules.model import RuleSet
from receiver.ruletest.files import SimSettings
from receiver.ruletest.spec import FixtureSpec, offset_seconds
from receiver.store import Store
from receiver.telemetry import Metrics
from remediations.base import Clients, Registry
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
    """The ``Facts`` of a test: (kind of fact, target key) -> value, from its fixtures.

    A step script becomes the fact ``step_outcome:<action>`` (the simulated step runner asks
    for it). A value written ``{at: OFFSET}`` becomes the simulated time at that offset, so a
    fixture can say "rolled out ten minutes before the start" (``{at: -10m}``)."""

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._facts: dict[tuple[str, str], Any] = {}

    def apply(self, fixtures: Iterable[FixtureSpec]) -> None:
        """Set the facts the fixtures state (later ones replace earlier ones)."""
        for fixture in fixtures:
            for kind, value in fixture.facts.items():
                self._facts[(kind, fixture.target)] = self._value(value)
            for action, script in fixture.steps.items():
                self._facts[(f"{STEP_OUTCOME_FACT}:{action}", fixture.target)] = {
                    "outcome": script.outcome,
                    "message": script.message,
                }

    def _value(self, value: Any) -> Any:
        if isinstance(value, Mapping) and set(value) == {"at"}:
            return self._start + timedelta(seconds=offset_seconds(value["at"], signed=True))
        return value

    async def get(self, kind: str, target: Target) -> Any | None:
        return self._facts.get((kind, target.key))


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
            facts=facts,
        )
        intake = Intake(store, settle=pipeline.settled_at_intake)
        yield Simulation(clock, store, guards, desk, facts, pipeline, intake)
    finally:
        if intake is not None:
            await intake.drain()
        await store.close()
