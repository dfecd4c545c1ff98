"""The run pipeline: the stages a run goes through, and the handlers the worker calls.

    [facts] plan -> admit -> approve -> execute -> request approval -> record/verify
                                                                (``Stages.run``)
    close -> admit -> approve -> execute -> request approval -> record
                                                                (``Stages.resolve``: on_resolved;
                                                                 an undo that stopped is announced)
    admit -> approve -> execute -> request approval -> record   (``Stages.escalate``: on_failed)

``Pipeline`` wires them around the service's dependencies and is what the worker is given:
``await pipeline(event)`` for an alert event, ``await pipeline.run_job(job)`` for a job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from receiver import engine
from receiver.approvals.desk import ApprovalDesk
from receiver.guards.redis_guards import Guards
from receiver.model import AlertEvent, Disposition, Status
from receiver.pipeline.budget import REFUND_STORE_TIMEOUT_S, BudgetRefund
from receiver.pipeline.context import Deps, FactSource, PipelineSettings
from receiver.pipeline.digest import DigestSender
from receiver.pipeline.events import EventHandler
from receiver.pipeline.jobs import JobHandler
from receiver.pipeline.runner import Stages
from receiver.priority import Priority
from receiver.rules.loader import RuleHolder
from receiver.store import ClaimedJob, EventLease, Store
from receiver.telemetry import Metrics
from remediations.base import Clients, Registry

__all__ = ["FactSource", "Pipeline", "PipelineSettings"]


class Pipeline:
    """The worker's view of the pipeline: one call per alert event, one per job. ``log``: the
    logger it logs through (None: structlog's ``remediator.pipeline``, looked up at each use)."""

    def __init__(
        self,
        *,
        store: Store,
        guards: Guards,
        rules: RuleHolder,
        registry: Registry,
        clients: Clients,
        settings: PipelineSettings,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        approvals: ApprovalDesk | None = None,
        fixtures: FactSource | None = None,
        priority: Priority | None = None,
        log: Any | None = None,
    ) -> None:
        self._rules = rules
        # Given to the worker too (``Worker(priority=pipeline.priority)``): see receiver.priority.
        self.priority = priority if priority is not None else Priority()
        # ``serve`` gives a logger bound once, as it does the worker's: each event binds its
        # own from it, and binding from structlog's lazy proxy looks the logger up again, a
        # stdlib logging lock included, for every event of a storm.
        self._log: Any = log if log is not None else structlog.get_logger("remediator.pipeline")
        deps = Deps(
            store=store,
            guards=guards,
            registry=registry,
            clients=clients,
            settings=settings,
            metrics=metrics,
            clock=clock,
            approvals=approvals,
            fixtures=fixtures,
            priority=self.priority,
        )
        if approvals is not None:
            # A run its approval ends gives back the budget slot it never used.
            approvals.ended = BudgetRefund(
                store.bounded(REFUND_STORE_TIMEOUT_S), guards, registry, self._log
            )
        self._deps = deps
        self.stages = Stages(deps)
        # The refusal digests' sender: ``serve`` runs it in the background (``run``).
        self.digests = DigestSender(deps, self._log.bind(component="digests"))
        self._events = EventHandler(deps, self.stages, rules, self._log)
        self._jobs = JobHandler(deps, self.stages, rules, self._log)

    def settled_at_intake(self, status: Status, labels: Mapping[str, str]) -> str | None:
        """For ``Intake(settle=...)``: the rules in force when the alert arrives decide, as they
        would in the worker moments later. If deciding fails, the event is queued: the worker
        then meets the same failure where it is retried and recorded, and intake still answers."""
        try:
            return engine.settled_at_intake(status, labels, self._rules.current)
        except Exception:
            self._log.exception("matching at intake failed; the event is queued instead")
            return None

    def wind_down(self) -> None:
        """The service is stopping: no run is admitted and no step begins from now on. A run
        not yet admitted, or between two steps, hands its event or job back (its steps left
        pending) for the next worker, having asked no guard (stages.py, resolve.py,
        execute.py). Idempotent."""
        self._deps.stopping.set()

    async def __call__(self, event: AlertEvent, lease: EventLease | None = None) -> Disposition:
        """Process one claimed alert event (``EventHandler``); ``lease`` lets its last write
        complete it (``Worker(lease_to_process=True)``)."""
        return await self._events(event, lease)

    async def run_job(self, job: ClaimedJob) -> Disposition:
        return await self._jobs(job)
