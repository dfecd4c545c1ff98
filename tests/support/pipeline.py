"""The pipeline on real PostgreSQL and Redis, driven without a background worker.

``make_harness(rules_yaml, ...)`` builds the real Intake, Guards, RuleHolder and Pipeline on
the test's store and Redis; ``Harness.drain()`` claims and processes until nothing is due.
With ``kube`` (an ApiClient) the actions run against that cluster, else in dry-run; ``clients``
adds other clients by name (``postgres:<name>``, ``notify``, ...), ``extra_actions`` test
actions, ``approvals`` an approval desk, ``clock`` the pipeline's clock (what "now" is when
a plan decides on a rollout's age), ``guard_clock`` the guards' (``Guards(clock=...)``: what
"now" is in Redis, for cooldowns, rate windows and refusal digests' windows),
``refusal_digest_s`` the window of refusal digests (0: off), ``guards_down_retry_s`` how soon
an item the guards or an unreachable system held back is due again (0: at once, for the next
``drain``), ``unreachable_retry_s`` and ``undo_unreachable_retry_s`` how long a step waits for
a system it cannot reach, ``redis_client_override`` another
client for the guards (another user of the same server). ``Harness.worker`` is a real
background worker on the same pipeline, for the tests of retries and dead letters.
``RESTART_WEB`` is the one-step rule most pipeline tests run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import structlog

from receiver.approvals.desk import ApprovalDesk
from receiver.guards.policy import GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.intake import Intake
from receiver.model import UNDO_UNREACHABLE_RETRY_S, UNREACHABLE_RETRY_S, NamespacePolicy
from receiver.pipeline import Pipeline, PipelineSettings
from receiver.refusal_digest import REFUSAL_DIGEST_S
from receiver.rules.loader import RuleHolder
from receiver.store import EventLease, RunRecord, Store
from receiver.telemetry import Metrics
from receiver.worker import Worker
from remediations.base import Clients
from remediations.registry import default_registry
from tests.support.payloads import alert, notification
from tests.support.polling import PATIENCE_S

__all__ = ["RESTART_WEB", "Harness", "MakeHarness", "make_harness"]

# Restart the alert's Deployment (dry-run unless the harness has ``kube``) on HighMemoryUsage.
RESTART_WEB = """
rules:
  - name: restart-web
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
"""


@dataclass
class Harness:
    store: Store
    guards: Guards
    intake: Intake
    pipeline: Pipeline
    metrics: Metrics
    rules_file: Path
    rules: RuleHolder
    owner: str = "test-worker"

    def reload_rules(self, text: str) -> None:
        self.rules_file.write_text(text)
        assert self.rules.reload() == []

    async def drain(self, rounds: int = 20) -> int:
        """Claim and process events, then due jobs, until nothing is due; returns how many
        items were processed.

        Deterministic: no sleeps, no background worker. A released item (retry) is due again
        only after its delay, so a drain stops at it."""
        done = 0
        for _ in range(rounds):
            events = await self.store.claim_events(self.owner, 50, 30.0)
            for c in events:
                # As the service's worker does: the event's last write may complete it.
                disposition = await self.pipeline(
                    c.event, EventLease(c.event.id, self.owner, c.attempts)
                )
                if not disposition.is_done:
                    await self.store.release_event(
                        c.event.id,
                        self.owner,
                        c.attempts,
                        disposition.retry_after_s or 0.0,
                        disposition.error,
                    )
                    return done
                if not disposition.settled:
                    await self.store.complete_event(c.event.id, self.owner, c.attempts)
                done += 1
            jobs = await self.store.claim_jobs(self.owner, 50, 30.0)
            for job in jobs:
                disposition = await self.pipeline.run_job(job)
                if not disposition.is_done:
                    await self.store.release_job(
                        job.id,
                        self.owner,
                        job.attempts,
                        disposition.retry_after_s or 0.0,
                        disposition.error,
                    )
                    return done
                await self.store.complete_job(job.id, self.owner, job.attempts)
                done += 1
            if not events and not jobs:
                return done
        return done

    def worker(self, *, concurrency: int, poll_interval_s: float, max_attempts: int = 3) -> Worker:
        """A real worker (not started) on this pipeline, for alert events and jobs: 30 s
        leases, a failed item retried after about 10 ms, ``max_attempts`` failures make it
        dead."""
        return Worker(
            self.store,
            self.pipeline,
            process_job=self.pipeline.run_job,
            lease_to_process=True,
            concurrency=concurrency,
            lease_s=30,
            poll_interval_s=poll_interval_s,
            backoff_base_s=0.01,
            max_attempts=max_attempts,
            log=structlog.get_logger("test.worker"),
        )

    async def deliver(self, labels: dict[str, str], status: str = "firing") -> None:
        """One alert in through intake, processed to the end: nothing may be left queued."""
        await self.intake.accept(notification(alert(labels, status=status)))
        await self.drain()
        assert await self.store.queue_depth() == 0

    async def runs(self, **filters: Any) -> list[RunRecord]:
        rows, _ = await self.store.list_runs(limit=500, **filters)
        return rows

    async def only_run(self) -> RunRecord:
        """The one run there is, with its steps."""
        rows = await self.runs()
        assert len(rows) == 1, rows
        run = await self.store.get_run(rows[0].id)
        assert run is not None
        return run


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(
    store: Store, redis_client: redis.asyncio.Redis, tmp_path: Path
) -> AsyncIterator[MakeHarness]:
    intakes: list[Intake] = []

    async def make(
        rules: str,
        guard_settings: GuardSettings | None = None,
        policy: NamespacePolicy | None = None,
        *,
        kube: Any | None = None,
        clients: dict[str, Any] | None = None,
        dry_run: bool = True,
        extra_actions: list[Any] | None = None,
        approvals: ApprovalDesk | None = None,
        clock: Callable[[], datetime] | None = None,
        lock_wait_s: float = 5.0,
        metrics: Metrics | None = None,
        guard_clock: Callable[[], datetime] | None = None,
        refusal_digest_s: float = REFUSAL_DIGEST_S,
        redis_client_override: redis.asyncio.Redis | None = None,
        resolve_retry_s: float = 60.0,
        log: Any | None = None,
        guards_down_retry_s: float = 5.0,
        unreachable_retry_s: float = UNREACHABLE_RETRY_S,
        undo_unreachable_retry_s: float = UNDO_UNREACHABLE_RETRY_S,
    ) -> Harness:
        rules_dir = tmp_path / f"rules{len(intakes)}"
        rules_dir.mkdir()
        (rules_dir / "rules.yaml").write_text(rules)
        policy = policy or NamespacePolicy()
        registry = default_registry()
        for action in extra_actions or []:
            registry.register(action)
        named = dict(clients or {})
        if kube is not None:
            named["kubernetes"] = kube
        guards = Guards(
            redis_client_override or redis_client,
            policy,
            guard_settings or GuardSettings(),
            clock=guard_clock,
        )
        metrics = metrics or Metrics()
        holder = RuleHolder(rules_dir, registry, policy)
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        pipeline = Pipeline(
            store=store,
            guards=guards,
            rules=holder,
            registry=registry,
            clients=Clients(named),
            settings=PipelineSettings(
                dry_run=dry_run,
                policy=policy,
                lock_wait_s=lock_wait_s,
                refusal_digest_s=refusal_digest_s,
                resolve_retry_s=resolve_retry_s,
                guards_down_retry_s=guards_down_retry_s,
                unreachable_retry_s=unreachable_retry_s,
                undo_unreachable_retry_s=undo_unreachable_retry_s,
            ),
            metrics=metrics,
            approvals=approvals,
            log=log,
            **extra,
        )
        # Intake's deadline (5 s in the service) is not what these tests are about: on a busy
        # machine a write outlasted it and the test failed with a 503's error. The tests of
        # the deadline build an Intake of their own (test_intake.py, http/test_frozen_store.py).
        intake = Intake(store, settle=pipeline.settled_at_intake, timeout_s=PATIENCE_S)
        intakes.append(intake)
        return Harness(store, guards, intake, pipeline, metrics, rules_dir / "rules.yaml", holder)

    yield make
    for intake in intakes:
        await intake.drain()
