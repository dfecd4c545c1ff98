"""A storm's refused event is one transaction (issue 12): the run stored refused, its steps,
its one audit row (run created, with its steps, its refusal and the announcement when there
was nothing to send) and the completion of the event, all in the statement that stores the run.

"One transaction" is read off the rows themselves: PostgreSQL stamps every row version with
the id of the transaction that wrote it (``xmin``), so the run, the event row as completed
and each audit row carry the same id exactly when one transaction wrote them all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from receiver.model import RunOutcome
from receiver.store import EventLease, LeaseLost, RunRecord, Store
from receiver.worker import Worker
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.payloads import alert, notification
from tests.support.peer import Peer, Reply, answering, peer
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.polling import current, eventually

__all__ = ["peer"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

HOOK = "/hooks/oncall"

# Two steps, one run an hour: the first alert's run is admitted (dry-run), every later one
# refused.
RULE = (
    RESTART_WEB
    + """      - action: kubernetes.rollout_restart
    guards: {max_runs: {count: 1, per: 1h}}
    notify: {channel: oncall, events: [refused]}
"""
)

# The same, and a second rule on the same alert: its run is planned after the first's.
TWO_RULES = (
    RULE
    + """
  - name: zz-second
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
    guards: {max_runs: {count: 1, per: 1h}}
"""
)


def labels(name: str) -> dict[str, str]:
    return {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": name}


async def xmin(store: Store, table: str, key: Any) -> str:
    cast = "::uuid" if table == "runs" else ""
    value = await store._pool.fetchval(f"SELECT xmin::text FROM {table} WHERE id = $1{cast}", key)
    assert value is not None, (table, key)
    return str(value)


async def audit_rows(store: Store, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, xmin, data) of the run's audit rows, in chain order."""
    rows = await store._pool.fetch(
        "SELECT kind, xmin::text AS x, data FROM audit_log WHERE run_id = $1::uuid ORDER BY id",
        run_id,
    )
    return [(r["kind"], r["x"], json.loads(r["data"])) for r in rows]


async def refused_runs(h: Harness) -> list[RunRecord]:
    return await h.runs(outcome=RunOutcome.REFUSED)


async def test_a_refused_event_is_stored_audited_and_completed_in_one_transaction(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RULE)
    for name in ("a", "b"):
        await h.intake.accept(notification(alert(labels(name))))
    # The service's own worker (it gives the pipeline each event's lease).
    async with h.worker(concurrency=1, poll_interval_s=0.05):

        async def settled() -> int:
            return await h.store.queue_depth()

        await eventually(settled, lambda depth: depth == 0)

    (refused,) = await refused_runs(h)
    assert refused.event_id is not None
    event = await h.store.get_event(refused.event_id)
    assert event is not None
    assert event["state"] == "done"
    one = await xmin(h.store, "runs", refused.id)
    assert await xmin(h.store, "alert_events", refused.event_id) == one
    # One audit row: the run created, with its refusal and the announcement that had nothing
    # to send (receiver/audit_folds.py), where there were three rows up to stop 39.
    trail = await audit_rows(h.store, refused.id)
    assert [kind for kind, _, _ in trail] == ["run.created"]
    assert {x for _, x, _ in trail} == {one}
    created = trail[0][2]
    assert created["refused"] == {
        "guard": refused.refusal_guard,
        "reason": refused.refusal_reason,
        "retry_at": refused.retry_at.isoformat() if refused.retry_at else None,
    }
    assert [s["outcome"] for s in created["steps"]] == ["not_run", "not_run"]
    announced = created["announced"]
    assert announced["event"] == "refused"
    assert announced["channel"] == "oncall"
    assert announced["delivered"] is False
    assert "notify.channels" in announced["detail"]

    # The admitted run is stored admitted and running in one statement; its steps run after
    # that, its outcome is recorded last.
    (admitted,) = await h.runs(outcome=RunOutcome.DRY_RUN)
    assert admitted.event_id is not None
    last = await xmin(h.store, "runs", admitted.id)
    # Its event is completed after the outcome: the target lock is released in between.
    assert await xmin(h.store, "alert_events", admitted.event_id) != last
    trail = await audit_rows(h.store, admitted.id)
    assert [(kind, data.get("outcome")) for kind, _, data in trail] == [
        ("run.created", "pending"),
        ("step", "pending"),
        ("step", "pending"),
        ("run.admitted", None),
        ("run.outcome", "running"),
        ("step", "dry_run"),
        ("step", "dry_run"),
        ("run.outcome", "dry_run"),
    ]
    first = trail[0][1]
    assert [x == first for _, x, _ in trail] == [True] * 5 + [False] * 3
    assert trail[-1][1] == last
    assert trail[3][2]["guards"]
    assert (
        h.metrics.registry.get_sample_value(
            "remediator_announcements_total", {"event": "refused", "delivered": "false"}
        )
        == 1.0
    )


@pytest.fixture
async def notifier(peer: Peer) -> AsyncIterator[Notifier]:
    policy = HttpPolicy(timeout=2.0, attempts=1, initial_wait=0.01, max_wait=0.02)
    async with aiohttp.ClientSession() as session:
        channels = {"oncall": Channel("oncall", ChannelKind.WEBHOOK, peer.url(HOOK), policy)}
        yield Notifier(channels, session)


async def test_a_refusal_with_a_message_to_send_sends_it_after_the_run_is_stored(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await make_harness(RULE, clients={"notify": notifier})
    for name in ("a", "b"):
        await h.intake.accept(notification(alert(labels(name))))
    await h.drain()

    (refused,) = await refused_runs(h)
    assert refused.event_id is not None
    one = await xmin(h.store, "runs", refused.id)
    # The message goes out once the run is stored, and its row is a transaction of its own;
    # the event is completed after it (its worker still holds it while the message goes out).
    trail = await audit_rows(h.store, refused.id)
    assert [kind for kind, _, _ in trail][-1] == "run.announced"
    assert trail[-1][2]["delivered"] is True
    assert trail[-1][1] != one
    assert {x for kind, x, _ in trail if kind != "run.announced"} == {one}
    assert await xmin(h.store, "alert_events", refused.event_id) not in {one, trail[-1][1]}
    assert [r.body["event"] for r in peer.seen(HOOK)] == ["run_refused"]


async def test_an_event_is_held_while_its_refusal_is_being_announced(
    make_harness: MakeHarness,
) -> None:
    """Completed with the run, the event would be done while its message is still on the way:
    the next event of the same alert could be claimed and processed meanwhile, and the lease
    keeper would find nothing to extend (below). It is done once its work is."""
    seen: list[str | None] = []
    h: Harness | None = None

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        assert h is not None
        seen.append(
            await h.store._pool.fetchval(
                "SELECT state FROM alert_events WHERE labels->>'deployment' = 'b'"
            )
        )
        return web.Response(text="ok")

    policy = HttpPolicy(timeout=2.0, attempts=1, initial_wait=0.01, max_wait=0.02)
    async with answering(hook) as base, aiohttp.ClientSession() as session:
        channels = {"oncall": Channel("oncall", ChannelKind.WEBHOOK, base + HOOK, policy)}
        h = await make_harness(RULE, clients={"notify": Notifier(channels, session)})
        for name in ("a", "b"):
            await h.intake.accept(notification(alert(labels(name))))
        await h.drain()

    assert seen == ["claimed"]
    (refused,) = await refused_runs(h)
    assert refused.event_id is not None
    event = await h.store.get_event(refused.event_id)
    assert event is not None
    assert event["state"] == "done"


async def test_a_slow_message_of_a_refusal_is_not_abandoned_by_the_worker(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    """The worker extends an event's lease every third of it while the pipeline works on it;
    an extension that finds the event no longer held means another worker may have it, and
    the work is cancelled. A message that takes longer than that to send must still go out,
    be recorded, and its event counted processed."""
    # The channel takes longer to answer than a third of the lease (1.5 s): real time
    # passing on purpose, so that the lease is extended while the message is on its way.
    peer.answer(HOOK, Reply(delay=1.2))
    h = await make_harness(RULE, clients={"notify": notifier})
    await h.intake.accept(notification(alert(labels("a"))))
    await h.drain()
    await h.intake.accept(notification(alert(labels("b"))))
    worker = Worker(
        h.store,
        h.pipeline,
        lease_to_process=True,
        concurrency=1,
        lease_s=1.5,
        poll_interval_s=0.05,
        log=structlog.get_logger("test.worker"),
    )
    async with worker:
        await eventually(current(lambda: worker.processed), lambda n: n == 1)

    (refused,) = await refused_runs(h)
    trail = await audit_rows(h.store, refused.id)
    assert [kind for kind, _, _ in trail][-1] == "run.announced"
    assert trail[-1][2]["delivered"] is True
    assert [r.body["event"] for r in peer.seen(HOOK)] == ["run_refused"]
    assert await h.store.queue_depth() == 0


async def test_only_the_last_write_of_an_event_completes_it(make_harness: MakeHarness) -> None:
    h = await make_harness(TWO_RULES)
    await h.intake.accept(notification(alert(labels("a"))))
    await h.drain()  # both rules' first runs are admitted
    await h.intake.accept(notification(alert(labels("b"))))
    await h.drain()

    refused = {run.rule: run for run in await refused_runs(h)}
    assert sorted(refused) == ["restart-web", "zz-second"]
    first, last = refused["restart-web"], refused["zz-second"]
    assert first.event_id == last.event_id
    assert first.event_id is not None
    event_x = await xmin(h.store, "alert_events", first.event_id)
    assert await xmin(h.store, "runs", last.id) == event_x
    assert await xmin(h.store, "runs", first.id) != event_x


async def test_a_run_does_not_complete_an_event_whose_lease_it_lost(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RULE)
    await h.intake.accept(notification(alert(labels("a"))))
    await h.drain()
    await h.intake.accept(notification(alert(labels("b"))))
    (claimed,) = await h.store.claim_events(h.owner, 5, 30.0)

    lease = EventLease(claimed.event.id, "a-worker-that-lost-it", claimed.attempts)
    # Nor does it store its run: the completion it carries is its fence (fence.py), and a run
    # stored under a lost lease would stand as the one its owner was about to store.
    with pytest.raises(LeaseLost, match="no longer leased to a-worker-that-lost-it"):
        await h.pipeline(claimed.event, lease)

    assert not lease.completed
    assert await refused_runs(h) == []
    event = await h.store.get_event(claimed.event.id)
    assert event is not None
    assert event["state"] == "claimed"
    # Its owner still holds it, and settles it as before.
    assert await h.store.complete_event(claimed.event.id, h.owner, claimed.attempts)


async def test_an_admitted_run_says_started_and_finished_in_its_own_writes(
    make_harness: MakeHarness,
) -> None:
    # Announced to a channel that cannot send: each row goes with the write it follows.
    h = await make_harness(RULE.replace("events: [refused]", "events: [started, finished]"))
    await h.intake.accept(notification(alert(labels("a"))))
    await h.drain()

    (run,) = await h.runs(outcome=RunOutcome.DRY_RUN)
    trail = await audit_rows(h.store, run.id)
    kinds = [(kind, data.get("event") or data.get("outcome")) for kind, _, data in trail]
    assert kinds == [
        ("run.created", "pending"),
        ("step", "pending"),
        ("step", "pending"),
        ("run.admitted", None),
        ("run.outcome", "running"),
        ("run.announced", "started"),
        ("step", "dry_run"),
        ("step", "dry_run"),
        ("run.outcome", "dry_run"),
        ("run.announced", "finished"),
    ]
    xs = [x for _, x, _ in trail]
    assert len(set(xs[:6])) == 1  # stored with its admission and its "started"
    assert xs[-1] == xs[-2] == await xmin(h.store, "runs", run.id)  # "finished" with the outcome
    assert xs[0] != xs[-1]
    assert all(not data["delivered"] for kind, _, data in trail if kind == "run.announced")
