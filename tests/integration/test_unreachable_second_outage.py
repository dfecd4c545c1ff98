"""A step's second outage, after a guard held it between the two, waits its whole bound again
(receiver/pipeline/unreachable.py, store/deferrals.py).

The bound is counted from the first failed try of the current wait, which the step's
``started_at`` holds while its message says it waits. A guard holding the step between two
outages (a pause, another run's target lock) rewrites its message and ends that wait; the
next outage begins a new one. Real kube-apiserver (cut off by pointing the client at a
closed port, as tests/integration/test_unreachable_system.py does), PostgreSQL and Redis.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.integration.test_restores import SCALE, backlog, replicas
from tests.support.kube_fixtures import MakeDeployment
from tests.support.outage import Clock, Outage
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]


async def _undo(h: Harness) -> Any:
    [run] = await h.runs()
    record = await h.store.get_run(run.id)
    assert record is not None
    [undo] = [s for s in record.steps if s.phase == "resolve"]
    return undo


async def _jobs_due_now(h: Harness) -> None:
    async with h.store._pool.acquire() as conn:
        await conn.execute(
            "UPDATE jobs SET not_before = remediator_now() WHERE state = 'pending'"
            " AND kind <> 'verify_deadline'"
        )


async def test_an_undo_held_by_a_pause_between_two_outages_waits_its_bound_again(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    outage: Outage,
) -> None:
    ns = kube_namespace
    await make_deployment("workers", replicas=4)
    clock = Clock()
    h = await make_harness(
        SCALE,
        kube=outage.client,
        dry_run=False,
        guards_down_retry_s=0,
        clock=clock,
        undo_unreachable_retry_s=60,
    )
    labels = backlog(ns, "orders")
    await h.intake.accept(notification(alert(labels)))
    await h.drain()
    assert await replicas(kube_admin, ns) == 6

    # The first outage: the undo waits.
    outage.begin()
    await h.intake.accept(notification(alert(labels, status="resolved")))
    await h.drain()
    undo = await _undo(h)
    assert undo.outcome == "pending"
    assert undo.message.startswith("waiting for its system: "), undo.message

    # A pause holds it at its next try: that wait is over, the step is held.
    await h.guards.pause(None, "change freeze", by="bob")
    await h.drain()
    undo = await _undo(h)
    assert undo.outcome == "pending"
    assert undo.message.startswith("held by the pause guard"), undo.message

    # Two hours later the pause is lifted while the system is down again: a new wait begins,
    # bounded from its own first try, not from the first outage's.
    clock.now += timedelta(hours=2)
    await h.guards.resume()
    await _jobs_due_now(h)
    await h.drain()
    undo = await _undo(h)
    assert undo.outcome == "pending", undo.message
    assert f"(1 try since {clock.now.isoformat()}" in undo.message, undo.message
    clock.now += timedelta(seconds=10)
    await _jobs_due_now(h)
    await h.drain()
    undo = await _undo(h)
    assert undo.outcome == "pending", undo.message
    assert "(2 tries since " in undo.message, undo.message
    assert await replicas(kube_admin, ns) == 6

    outage.end()
    await _jobs_due_now(h)
    await h.drain()
    assert (await _undo(h)).outcome == "ok"
    assert await replicas(kube_admin, ns) == 4
