"""A new run's admitted write that commits after its client gave up, taken up by the event's
retry.

The worker's pass asks the guards (Redis takes the target lock under the run's id), then stores
the run admitted and running in one statement. That statement can reach PostgreSQL after the
client's deadline (a connection that stalled: receiver/store/bounded.py says a write may still
commit after the client gave up). The pass sees the store unavailable, gives the lock back
(``released_if_unrecorded``) and the event is released for its retry; the same worker claims it
again under the same owner, so the late statement's fence passes when it lands. Landing after
the retry read the alert's past and before it stored the run, it used to stand as the run: the
retry found it stored, stopped with "another worker owns this run" and completed the event,
and the run stayed ``running`` with no step begun, its lock given back, and nothing left to take
it up. Now the retry takes it up as a run whose worker stopped, once.

Real PostgreSQL and Redis: the late statement is held by a relay (tests/support/relay.py) from
the chunk that carries the run's id (its Bind), and let through while the retry asks its guards.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from receiver.guards.policy import Admission
from receiver.model import AlertEvent, NamespacePolicy, RunOutcome
from receiver.pipeline import Pipeline, PipelineSettings
from receiver.store import EventLease, Store, StoreUnavailable, run_id_of
from receiver.telemetry import Metrics
from remediations.base import Clients
from remediations.registry import default_registry
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.polling import eventually
from tests.support.relay import HeldRelay, relay_to_postgres, through
from tests.support.target_locks import lock_holder

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
RULE = "restart-web"


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[HeldRelay]:
    async with relay_to_postgres(database_url) as made:
        yield made


@pytest.fixture
async def stalled(database_url: str, relay: HeldRelay) -> AsyncIterator[Store]:
    """The first attempt's store: through the relay, each call given up after 2 s, as a
    connection that stalls is."""
    made = await Store.connect(through(database_url, relay.port), min_size=1, max_size=2)
    try:
        yield made.bounded(2.0)
    finally:
        relay.let_through()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(made.close(), 30)


def _pipeline_over(h: Harness, store: Store) -> Pipeline:
    """The harness's pipeline (its guards, rules and settings) writing to ``store``."""
    return Pipeline(
        store=store,
        guards=h.guards,
        rules=h.rules,
        registry=default_registry(),
        clients=Clients({}),
        settings=PipelineSettings(dry_run=True, policy=NamespacePolicy()),
        metrics=Metrics(),
    )


async def _audit_kinds(database_url: str, run_id: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT kind FROM audit_log WHERE run_id = $1::uuid ORDER BY id", run_id
        )
    finally:
        await conn.close()
    return [r["kind"] for r in rows]


async def _stored_late(
    h: Harness, stalled: Store, relay: HeldRelay, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, AlertEvent, EventLease]:
    """The alert's first attempt, whose statement storing its run admitted waits in the
    network while its client gives up; the event released for its retry and claimed again by
    the same worker; and the late statement let through, to commit, as the retry asks its
    guards (after it read the alert's past, with no run in it, before it stores the run).
    The run's id, the event as claimed again, and the lease the retry runs under."""
    await h.intake.accept(notification(alert(LABELS)))
    (claimed,) = await h.store.claim_events(h.owner, 1, 60.0)
    event = claimed.event
    run_id = run_id_of(RULE, event.fingerprint, event.starts_at, event.refire)
    relay.hold_from(uuid.UUID(run_id).bytes)
    with pytest.raises(StoreUnavailable):
        await _pipeline_over(h, stalled)(event, EventLease(event.id, h.owner))
    assert relay.holding.is_set()
    assert await h.runs() == []
    assert await lock_holder(h) is None  # given back: the admission was not recorded
    # As the worker does after a store outage: the same owner claims it again.
    assert await h.store.release_event(event.id, h.owner, 0.0, "StoreUnavailable")
    (again,) = await h.store.claim_events(h.owner, 1, 60.0)
    assert again.event.id == event.id

    admit = h.guards.admit

    async def the_late_write_lands_meanwhile(*args: Any, **kwargs: Any) -> Admission:
        if not await h.runs():
            relay.let_through()
            await eventually(h.runs, what="the late run's commit")
        return await admit(*args, **kwargs)

    monkeypatch.setattr(h.guards, "admit", the_late_write_lands_meanwhile)
    return run_id, again.event, EventLease(event.id, h.owner)


async def test_a_run_stored_after_its_client_gave_up_is_taken_up_by_the_retry_once(
    make_harness: MakeHarness,
    stalled: Store,
    relay: HeldRelay,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = await make_harness(RESTART_WEB)
    run_id, event, lease = await _stored_late(h, stalled, relay, monkeypatch)

    disposition = await h.pipeline(event, lease)

    assert disposition.is_done, disposition
    run = await h.only_run()
    assert run.id == run_id
    assert run.outcome == RunOutcome.DRY_RUN, run.outcome
    assert [s.outcome for s in run.steps] == ["dry_run"]
    kinds = await _audit_kinds(database_url, run_id)
    assert kinds.count("step") == 2, kinds  # planned, then its one outcome: run once
    assert kinds.count("run.admitted") == 2, kinds  # the late write's, the take-up's
    assert await lock_holder(h) is None


async def test_a_run_stored_late_while_the_retry_is_refused_is_taken_up_by_a_job(
    make_harness: MakeHarness,
    stalled: Store,
    relay: HeldRelay,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retry refused (a pause set between the attempts): its statement, finding the run
    stored, still completes the event, so nothing of the event can be written any more. A
    ``resume_run`` job takes the run up instead: refused while the pause lasts, as the run
    of a worker that stopped is; here the pause is lifted first, and its one step runs."""
    h = await make_harness(RESTART_WEB)
    run_id, event, lease = await _stored_late(h, stalled, relay, monkeypatch)
    await h.guards.pause(None, "maintenance window")

    disposition = await h.pipeline(event, lease)

    assert disposition.is_done, disposition
    assert lease.completed  # the refusal's statement completed the event
    (run,) = await h.runs()
    assert run.outcome == RunOutcome.RUNNING
    await h.guards.resume()
    assert await h.drain() == 1  # the job
    run = await h.only_run()
    assert run.outcome == RunOutcome.DRY_RUN, run.outcome
    assert [s.outcome for s in run.steps] == ["dry_run"]
    kinds = await _audit_kinds(database_url, run_id)
    assert kinds.count("step") == 2, kinds
    assert await lock_holder(h) is None
