"""A worker whose event was taken over in the middle of a step writes nothing more for it.

Worker A claims an alert event and runs its step, an action that must not run twice; while the
action works, A's lease runs out in the store (its extensions did not reach it) and worker B,
a second real worker on the same pipeline, claims the event: it finds A's started mark, records
the step interrupted (it may have acted) and ends the run failed. Then A's action returns.
Before the pipeline passed its claim to the store, A's late writes landed on B's work: the step
overwritten ``ok``, the run moved to ``succeeded``, and their audit rows appended. Now the first
of them finds the event no longer A's (receiver.store.fence): nothing is written, and A stops
the event without settling it.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any, ClassVar

import pytest
import structlog
from pydantic import BaseModel
from structlog.testing import capture_logs

from receiver.model import AlertEvent, Disposition, RunOutcome
from receiver.store import EventLease, Store
from receiver.worker import Worker
from remediations.base import ActionContext, Outcome, Result
from remediations.targets import Target
from tests.integration.test_step_crash import Count
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.polling import current, eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """
rules:
  - name: once
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.block
"""
LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}


class Block(Count):
    """A step that must not run twice whose first call waits until ``release`` is set (the
    test says when it returns); ``entered`` is set once it is in the call."""

    name: ClassVar[str] = "test.block"

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        result = await super().run(ctx, target, params)
        if self.calls == 1:
            self.entered.set()
            await self.release.wait()
        return Result(Outcome.OK, "acted", result.before, result.after)


def _worker(h: Harness, owner: str, process: Any) -> Worker:
    """A real worker of the harness's pipeline, its lease long enough that its own keeper
    never gives it up in the test: only the store's lease, run out, hands the event on."""
    return Worker(
        h.store,
        process,
        process_job=h.pipeline.run_job,
        owner=owner,
        lease_to_process=True,
        concurrency=1,
        lease_s=120.0,
        poll_interval_s=0.05,
        log=structlog.get_logger(f"test.{owner}"),
    )


async def _trail(store: Store, run_id: str) -> dict[str, Any]:
    """What a late write could change: the run, its steps and its audit rows."""
    run = await store.get_run(run_id)
    assert run is not None
    entries = await store.audit_entries(run_id)
    return {
        "outcome": run.outcome,
        "error": run.error,
        "steps": [(s.idx, s.outcome, s.message) for s in run.steps],
        "audit": [(e["kind"], e["data"]) for e in entries],
    }


async def _event_state(store: Store, event_id: int) -> tuple[str, str | None]:
    row = await store.get_event(event_id)
    assert row is not None
    return row["state"], row["lease_owner"]


def _logged(logs: list[MutableMapping[str, Any]], message: str) -> bool:
    return any(e["event"] == message for e in logs)


async def test_a_step_write_after_another_worker_took_the_event_over_changes_nothing(
    make_harness: MakeHarness,
) -> None:
    block = Block()
    h = await make_harness(RULES, dry_run=False, extra_actions=[block])
    a_done = asyncio.Event()

    async def process_a(event: AlertEvent, lease: EventLease | None = None) -> Disposition:
        try:
            return await h.pipeline(event, lease)
        finally:
            a_done.set()

    a = _worker(h, "worker-a", process_a)
    b = _worker(h, "worker-b", h.pipeline)
    with capture_logs() as logs:
        await a.start()
        try:
            await h.intake.accept(notification(alert(LABELS)))
            await asyncio.wait_for(block.entered.wait(), 20)
            (run,) = await h.runs()
            assert run.event_id is not None
            # A's lease runs out in the store, and B takes the event over and finishes it.
            async with h.store._tx() as conn:
                await conn.execute(
                    "UPDATE alert_events SET lease_until = remediator_now() - interval '1 second'"
                    " WHERE id = $1 AND lease_owner = 'worker-a'",
                    run.event_id,
                )
            await b.start()
            try:
                await eventually(
                    lambda: _event_state(h.store, run.event_id or 0),
                    lambda state: state == ("done", None),
                    what="worker B to finish the event",
                )
            finally:
                await b.stop(grace_s=5)
            by_b = await _trail(h.store, run.id)
            assert by_b["outcome"] is RunOutcome.FAILED
            assert [s[1] for s in by_b["steps"]] == [Outcome.INTERRUPTED]

            # A's action returns; its step's outcome is written under the claim it lost.
            block.release.set()
            await asyncio.wait_for(a_done.wait(), 20)
            assert await _trail(h.store, run.id) == by_b
            await eventually(
                current(lambda: _logged(logs, "lost the lease; another worker has it")),
                what=f"worker A to give the event up; logged: {logs}",
            )
        finally:
            block.release.set()
            await a.stop(grace_s=5)

    assert block.calls == 1  # B did not act again: the step may have acted
    assert await _event_state(h.store, run.event_id) == ("done", None)
    assert not [e for e in logs if e["log_level"] == "error"], logs
