"""A new run's admitted write that reaches PostgreSQL after its client gave up writes nothing
once the event's retry holds it.

The worker's pass asks the guards (Redis takes the target lock under the run's id), then stores
the run admitted and running in one statement. That statement can reach PostgreSQL after the
client's deadline (a connection that stalled: receiver/store/bounded.py says a write may still
commit after the client gave up). The pass sees the store unavailable, gives the lock back
(``released_if_unrecorded``) and the event is released for its retry; the same worker claims it
again under the same owner. Its fence used to pass when it landed, after the retry read the
alert's past and before it stored the run: it stood as the run, and the retry, finding it
stored, stopped with "another worker owns this run" and left it ``running`` with no step begun
(whghost took it up in the retry's pass instead). Now the fence names the claim
(receiver/store/fence.py): the late statement lands under the retry's claim, not its own, and
writes nothing; the retry stores and admits the run itself, once.

Real PostgreSQL and Redis: the late statement is held by a relay (tests/support/relay.py) from
the chunk that carries the run's id (its Bind), and let through while the retry asks its guards.
"""

from __future__ import annotations

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
from tests.support.relay import HeldRelay, relay_to_postgres, store_through
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
    """The first attempt's store, through the relay (``store_through``)."""
    async with store_through(database_url, relay) as made:
        yield made


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


async def _lands_late(
    h: Harness, stalled: Store, relay: HeldRelay, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, AlertEvent, EventLease, list[bool]]:
    """The alert's first attempt, whose statement storing its run admitted waits in the
    network while its client gives up; the event released for its retry and claimed again by
    the same worker; and the late statement let through, to run, as the retry asks its guards
    (after it read the alert's past, with no run in it, before it stores the run). It writes
    nothing (the list it returns says, once it landed, whether no run was stored then). The run's
    id, the event as claimed again, and the lease the retry runs under."""
    await h.intake.accept(notification(alert(LABELS)))
    (claimed,) = await h.store.claim_events(h.owner, 1, 60.0)
    event = claimed.event
    run_id = run_id_of(RULE, event.fingerprint, event.starts_at, event.refire)
    async with stalled._pool.acquire() as conn:
        pid = conn.get_server_pid()
    relay.hold_from(uuid.UUID(run_id).bytes)
    first = EventLease(event.id, h.owner, claimed.attempts)
    with pytest.raises(StoreUnavailable):
        await _pipeline_over(h, stalled.bounded(2.0))(event, first)
    assert relay.holding.is_set()
    assert await h.runs() == []
    assert await lock_holder(h) is None  # given back: the admission was not recorded
    # As the worker does after a store outage: the same owner claims it again.
    assert await h.store.release_event(event.id, h.owner, claimed.attempts, 0.0, "StoreUnavailable")
    (again,) = await h.store.claim_events(h.owner, 1, 60.0)
    assert again.event.id == event.id

    admit = h.guards.admit
    landed: list[bool] = []

    async def ended() -> bool:
        alive = await h.store._pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
        )
        return bool(alive == 0)

    async def the_late_write_lands_meanwhile(*args: Any, **kwargs: Any) -> Admission:
        if not landed:
            assert not await ended()  # still held, its session open
            relay.let_through()
            # Its session runs what it was sent, then ends: the client closed it long ago.
            await eventually(ended, what="the late statement's session to end")
            landed.append(await h.runs() == [])
        return await admit(*args, **kwargs)

    monkeypatch.setattr(h.guards, "admit", the_late_write_lands_meanwhile)
    return run_id, again.event, EventLease(event.id, h.owner, again.attempts), landed


async def test_a_run_stored_after_its_client_gave_up_writes_nothing_and_the_retry_runs_it_once(
    make_harness: MakeHarness,
    stalled: Store,
    relay: HeldRelay,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = await make_harness(RESTART_WEB)
    run_id, event, lease, landed = await _lands_late(h, stalled, relay, monkeypatch)

    disposition = await h.pipeline(event, lease)

    assert landed == [True]  # the late statement ran, and stored no run
    assert disposition.is_done, disposition
    run = await h.only_run()
    assert run.id == run_id
    assert run.outcome == RunOutcome.DRY_RUN, run.outcome
    assert [s.outcome for s in run.steps] == ["dry_run"]
    kinds = await _audit_kinds(database_url, run_id)
    assert kinds.count("step") == 2, kinds  # planned, then its one outcome: run once
    assert kinds.count("run.admitted") == 1, kinds  # the retry's alone
    assert await lock_holder(h) is None


async def test_a_run_stored_late_while_the_retry_is_refused_leaves_the_refusal_standing(
    make_harness: MakeHarness,
    stalled: Store,
    relay: HeldRelay,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retry refused (a pause set between the attempts): the late admitted copy, landing
    as the retry asks its guards, writes nothing, and the retry's refused run is the run, its
    statement completing the event. Before, the late copy stood as a running run with no step
    begun, and the retry's refusal, finding it stored, only completed the event."""
    h = await make_harness(RESTART_WEB)
    run_id, event, lease, landed = await _lands_late(h, stalled, relay, monkeypatch)
    await h.guards.pause(None, "maintenance window")

    disposition = await h.pipeline(event, lease)

    assert landed == [True]
    assert disposition.is_done, disposition
    assert lease.completed  # the refusal's statement completed the event
    run = await h.only_run()
    assert run.id == run_id
    assert run.outcome == RunOutcome.REFUSED, run.outcome
    assert [s.outcome for s in run.steps] == ["not_run"]
    kinds = await _audit_kinds(database_url, run_id)
    assert "run.admitted" not in kinds, kinds
    assert await h.drain() == 0  # nothing left to take up
    assert await lock_holder(h) is None
