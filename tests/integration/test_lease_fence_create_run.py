"""A worker that lost its lease stores no run (receiver/store/fence.py), on a real PostgreSQL.

Worker A claims an event; its lease runs out and worker B claims it. A's ``create_run`` that
lands after that (its guards answered, its statement late) writes nothing and raises
LeaseLost, whatever it stores (admitted, refused, pending), and B's own is the run, end to end
through the pipeline too (with Redis). A ``create_run`` under a claim other than the one it
completes is refused."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from receiver.model import RunOutcome, StepPlan, Target
from receiver.store import (
    EventLease,
    LeaseFence,
    LeaseLost,
    Refused,
    Store,
    admitted_data,
    run_id_of,
)
from tests.support.events import TARGET, alert_event, new_event
from tests.support.leases import RESTART, take_over
from tests.support.leases import claim_one as _claim
from tests.support.leases import take_over_fence as _take_over
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, MakeHarness

pytestmark = pytest.mark.postgres


async def _written(database_url: str) -> dict[str, Any]:
    """Everything a late ``create_run`` could write: the runs with their outcomes, their steps
    and audit rows, and the events' states and owners."""
    conn = await asyncpg.connect(database_url)
    try:
        runs = await conn.fetch("SELECT id::text, outcome FROM runs ORDER BY id")
        steps = await conn.fetchval("SELECT count(*) FROM steps")
        audit = await conn.fetch("SELECT kind, run_id::text FROM audit_log ORDER BY id")
        pending = await conn.fetchval("SELECT count(*) FROM audit_pending")
        events = await conn.fetch("SELECT id, state, lease_owner FROM alert_events ORDER BY id")
    finally:
        await conn.close()
    return {
        "runs": [tuple(r) for r in runs],
        "steps": steps,
        "audit": [tuple(r) for r in audit],
        "pending": pending,
        "events": [tuple(r) for r in events],
    }


async def test_a_late_create_run_writes_no_run_once_another_worker_claimed_the_event(
    store: Store, database_url: str
) -> None:
    """A's guards answered, and its statement storing the run lands after B claimed the event
    but before B stored the run (B is still asking the guards). It used to stand as the run:
    refused by A's answer, or running with no worker on it (B, finding it stored, leaves it
    be), or pending with no job to take it up; the refused one also took B's guard slots
    for nothing. Now it writes nothing and raises LeaseLost, and B's own is the run."""
    await store.insert_events([new_event(1)])
    event_id = await _claim(store, "a")
    event = alert_event(event_id, 1)
    a = LeaseFence("event", event_id, "a", 1)
    step = StepPlan(0, RESTART, {}, needs_approval=False, description="restart")
    run: dict[str, Any] = {"rule": "r", "event": event, "target": TARGET, "dry_run": True}
    run["steps"] = [step]
    b = await _take_over(store, event_id)
    before = await _written(database_url)
    late: dict[str, dict[str, Any]] = {
        "admitted": {"admitted": admitted_data(("pause",), fence=1), "lease": a},
        "refused": {
            "refusal": Refused("rate", "3 runs in the last 1m (max 3)", None),
            "complete": EventLease(event_id, "a", 1),
        },
        "refused, the event left to the worker": {
            "refusal": Refused("rate", "3 runs in the last 1m (max 3)", None),
            "lease": a,
        },
        "pending": {"lease": a},
    }
    for name, how in late.items():
        with pytest.raises(LeaseLost, match=f"event {event_id} is no longer leased to a"):
            await store.create_run(**run, **how)
        assert await _written(database_url) == before, f"the late {name} run wrote something"

    # B's run is stored and completes the event; A's late copy after it changes nothing.
    completing = EventLease(event_id, "b", 2)
    run_id = await store.create_run(
        **run, refusal=Refused("pause", "paused", None), complete=completing, lease=b
    )
    assert run_id is not None
    assert completing.completed
    after = await _written(database_url)
    assert after["runs"] == [(run_id, "refused")]
    assert after["events"] == [(event_id, "done", None)]
    with pytest.raises(LeaseLost):
        await store.create_run(**run, admitted=admitted_data(("pause",)), lease=a)
    assert await _written(database_url) == after


async def test_create_run_under_a_claim_it_does_not_complete_is_refused(store: Store) -> None:
    await store.insert_events([new_event(1)])
    event_id = await _claim(store, "a")
    with pytest.raises(ValueError, match="is not the claim of the event it completes"):
        await store.create_run(
            rule="r",
            event=alert_event(event_id, 1),
            target=TARGET,
            dry_run=True,
            complete=EventLease(event_id, "a", 1),
            lease=LeaseFence("event", event_id, "b", 1),
        )


@pytest.mark.redis
async def test_the_new_owner_runs_the_run_a_late_admitted_copy_no_longer_holds(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harm of a late admitted run, end to end: A's statement storing its admitted run
    lands after B claimed the event, while B asks the guards (after B read the alert's past,
    before B stores the run). It used to stand: B, finding the run stored, stopped with
    "another worker owns this run" and completed the event, and the run stayed running with
    no step begun and nobody to carry it on. Now it is refused, and B's run is the run."""
    h = await make_harness(RESTART_WEB)
    labels = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    await h.intake.accept(notification(alert(labels)))
    (claimed,) = await h.store.claim_events("a", 1, 60.0)
    event = claimed.event
    b = await take_over(h.store, event.id, "b")
    rule = "restart-web"
    late: list[BaseException | None] = []
    admit = h.guards.admit

    async def a_lands_while_b_asks(*args: Any, **kwargs: Any) -> Any:
        try:
            await h.store.create_run(
                rule=rule,
                event=event,
                target=Target("Deployment", "shop", "web"),
                dry_run=True,
                run_id=run_id_of(rule, event.fingerprint, event.starts_at, event.refire),
                admitted=admitted_data(("cooldown",), fence=1),
                lease=LeaseFence("event", event.id, "a", claimed.attempts),
            )
            late.append(None)
        except LeaseLost as exc:
            late.append(exc)
        return await admit(*args, **kwargs)

    monkeypatch.setattr(h.guards, "admit", a_lands_while_b_asks)
    assert (await h.pipeline(event, b)).is_done
    assert len(late) == 1
    assert isinstance(late[0], LeaseLost)
    run = await h.only_run()
    assert run.outcome == RunOutcome.DRY_RUN
    assert [s.outcome for s in run.steps] == ["dry_run"]
