"""Run lifecycle on real PostgreSQL and Redis: retries, re-fires, which runs get on_resolved.

Actions run dry here (no cluster); test_restores.py has the live restores.
"""

from __future__ import annotations

from receiver.model import RunOutcome
from receiver.store import RunRecord
from receiver.store.events import LATE_DELIVERY_WINDOW_S
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.redis import RedisServer

# restart-on-high-memory as shipped (rules/high-memory.yaml), with a scale-back to have an
# on_resolved step, and no cooldown so that re-fires are not refused by it.
MEMORY = """
rules:
  - name: restart-on-high-memory
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
      - action: kubernetes.set_resources
        when: {repeated: {times: 2, within: 1h}}
        params: {container: app, memory_limit: {factor: 1.5, max: 4Gi}}
        approval: required
    guards: GUARDS
    on_resolved:
      - action: kubernetes.scale
        params: {restore: true, max: 20}
"""

LABELS = {"alertname": "HighMemoryUsage", "namespace": "demo", "deployment": "fresh1"}
STARTS = "2024-08-01T00:00:00Z"


async def make_due(h: Harness) -> None:
    """Released events wait a few seconds; make them due now instead of sleeping."""
    async with h.store._pool.acquire() as conn:
        await conn.execute("UPDATE alert_events SET not_before = now() WHERE state = 'pending'")


async def received_long_ago(h: Harness) -> None:
    """As if every event so far had arrived past the late-delivery window ago."""
    async with h.store._pool.acquire() as conn:
        await conn.execute(
            "UPDATE alert_events SET received_at = received_at - make_interval(secs => $1)",
            LATE_DELIVERY_WINDOW_S + 60,
        )


async def with_steps(h: Harness, run: RunRecord) -> RunRecord:
    record = await h.store.get_run(run.id)
    assert record is not None
    return record


async def test_a_first_firing_retried_through_a_redis_outage_never_escalates(
    make_harness: MakeHarness, redis_controlled: RedisServer
) -> None:
    # Case 10: Redis down during the first attempts, then back.
    h = await make_harness(MEMORY.replace("GUARDS", "{}"))
    await h.intake.accept(notification(alert(LABELS, starts_at=STARTS)))
    redis_controlled.stop()
    try:
        for _ in range(3):  # three attempts, each "guards unavailable"
            assert await h.drain() == 0
            await make_due(h)
    finally:
        redis_controlled.start()
    assert await h.drain() == 1
    run = await h.only_run()
    assert [(s.idx, s.action) for s in run.steps] == [(0, "kubernetes.rollout_restart")]
    assert run.occurrence == 1
    assert run.outcome is RunOutcome.DRY_RUN
    # The second episode on that target is a repetition: now the escalation step is planned.
    await h.deliver({**LABELS}, status="resolved")
    await h.intake.accept(notification(alert(LABELS, starts_at="2024-08-01T00:20:00Z")))
    await h.drain()
    second = next(r for r in await h.runs() if r.starts_at == "2024-08-01T00:20:00Z")
    assert [s.action for s in (await with_steps(h, second)).steps] == [
        "kubernetes.rollout_restart",
        "kubernetes.set_resources",
    ]
    assert second.occurrence == 2


async def test_a_refire_with_the_same_starts_at_is_a_new_run_and_a_repetition(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(MEMORY.replace("GUARDS", "{}"))
    await h.intake.accept(notification(alert(LABELS, starts_at=STARTS)))
    await h.drain()
    await h.intake.accept(
        notification(
            alert(LABELS, starts_at=STARTS, status="resolved", ends_at="2024-08-01T00:05:00Z")
        )
    )
    await h.drain()
    await received_long_ago(h)
    # Alertmanager fires it again with the same startsAt: stored, planned, acted on.
    result = await h.intake.accept(notification(alert(LABELS, starts_at=STARTS)))
    assert (result.accepted, result.duplicates) == (1, 0)
    await h.drain()
    first, second = sorted(await h.runs(), key=lambda r: r.refire)
    assert (first.refire, second.refire) == (0, 1)
    assert first.starts_at == second.starts_at == STARTS
    assert first.resolved_at is not None
    assert second.resolved_at is None
    assert second.occurrence == 2  # the earlier occurrence of the episode counts
    assert [s.action for s in (await with_steps(h, second)).steps] == [
        "kubernetes.rollout_restart",
        "kubernetes.set_resources",
    ]


async def test_a_late_firing_copy_after_the_resolution_creates_nothing(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(MEMORY.replace("GUARDS", "{}"))
    await h.intake.accept(notification(alert(LABELS, starts_at=STARTS)))
    await h.drain()
    await h.intake.accept(notification(alert(LABELS, starts_at=STARTS, status="resolved")))
    await h.drain()
    # An HA peer's firing notification (built before the resolution) arrives now.
    peer = notification(alert(LABELS, starts_at=STARTS), external_url="http://am-1:9093")
    assert (await h.intake.accept(peer)).duplicates == 1
    await h.drain()
    (run,) = await h.runs()
    assert run.refire == 0
    assert run.resolved_at is not None


async def test_a_run_that_changed_nothing_gets_no_on_resolved_steps(
    make_harness: MakeHarness,
) -> None:
    # Dry-run: the run's steps changed nothing, so there is nothing to scale back.
    h = await make_harness(MEMORY.replace("GUARDS", "{}"))
    await h.deliver(LABELS)
    await h.deliver(LABELS, status="resolved")
    run = await h.only_run()
    assert run.outcome is RunOutcome.DRY_RUN
    assert run.resolved_at is not None
    assert [s.phase for s in run.steps] == ["run"]


async def test_a_refused_run_gets_no_on_resolved_steps(make_harness: MakeHarness) -> None:
    h = await make_harness(MEMORY.replace("GUARDS", "{cooldown: 15m}"))
    await h.deliver(LABELS)
    other = {**LABELS, "severity": "critical"}  # another alert on the same target
    await h.deliver(other)
    await h.deliver(other, status="resolved")
    refused = (await h.runs(outcome=RunOutcome.REFUSED))[0]
    record = await with_steps(h, refused)
    assert record.resolved_at is not None
    assert record.steps
    assert {(s.phase, s.outcome) for s in record.steps} == {("run", "not_run")}
