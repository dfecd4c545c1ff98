"""The whole path on real PostgreSQL and Redis: intake -> store -> worker -> engine -> guards ->
action (dry-run, no cluster) -> record: one run for many copies of a notification, a background
worker, a step a repeated alert adds, phases handing the target lock on, and alerts no rule
matches (at intake, or no longer when the worker reaches them). Kubernetes effects are tested
in test_pipeline_kubernetes.py against the real API server."""

from __future__ import annotations

import asyncio

import structlog
from structlog.testing import capture_logs

from receiver.engine import NO_RULE
from receiver.model import RunOutcome, Status, Target
from receiver.worker import Worker
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.pipeline_restart import BUMP, RESTART, RESTART_RULE, Bump, labels
from tests.support.polling import eventually


async def test_same_notification_5_times_then_20_concurrently_gives_one_run(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    note = notification(alert(labels()))
    results = [await h.intake.accept(note) for _ in range(5)]
    assert [(r.accepted, r.duplicates) for r in results] == [(1, 0)] + [(0, 1)] * 4
    # HA peers: the same alerts from another Alertmanager differ only in externalURL.
    peer = notification(alert(labels()), external_url="http://am-1:9093")
    concurrent = await asyncio.gather(*(h.intake.accept(peer) for _ in range(20)))
    assert sum(r.accepted for r in concurrent) == 0
    assert sum(r.duplicates for r in concurrent) == 20

    assert await h.drain() == 1
    runs = await h.runs()
    assert len(runs) == 1
    assert runs[0].rule == "restart-web"
    assert runs[0].target == Target("Deployment", "shop", "web")
    assert runs[0].outcome is RunOutcome.DRY_RUN
    steps = (await h.store.get_run(runs[0].id)).steps  # type: ignore[union-attr]
    assert [(s.action, s.outcome) for s in steps] == [("kubernetes.rollout_restart", "dry_run")]


async def test_the_pipeline_logs_through_the_logger_it_is_given(
    make_harness: MakeHarness,
) -> None:
    # serve binds the pipeline's logger once, as it does the worker's (each event used to look
    # it up again through structlog's lazy proxy); what the events log goes through it.
    given = structlog.get_logger("remediator.pipeline").bind(given=True)
    h = await make_harness(RESTART_RULE.replace("GUARDS", "{cooldown: 15m}"), log=given)
    with capture_logs() as logs:
        await h.intake.accept(notification(alert(labels())))
        await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T10:30:00Z")))
        await h.drain()
    (refused,) = [e for e in logs if e["event"] == "refused"]
    assert refused["given"] is True
    assert refused["guard"] == "cooldown"


async def test_escalation_step_only_when_the_alert_keeps_coming_back(
    make_harness: MakeHarness,
) -> None:
    rules = """
rules:
  - name: memory
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
      - action: kubernetes.set_resources
        when: {repeated: {times: 2, within: 1h}}
        params: {container: app, memory_limit: {factor: 1.5, max: 4Gi}}
"""
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T10:20:00Z")))
    await h.drain()
    first, second = sorted(await h.runs(), key=lambda r: r.starts_at)
    actions = []
    for run in (first, second):
        record = await h.store.get_run(run.id)
        assert record is not None
        actions.append([s.action for s in record.steps])
    assert actions == [
        ["kubernetes.rollout_restart"],
        ["kubernetes.rollout_restart", "kubernetes.set_resources"],
    ]
    assert second.occurrence == 2


async def test_background_worker_processes_what_intake_accepted(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    worker = Worker(h.store, h.pipeline, concurrency=2, lease_s=30, poll_interval_s=0.2)
    await worker.start()
    try:
        await h.intake.accept(notification(alert(labels())))
        await eventually(lambda: h.runs(outcome=RunOutcome.DRY_RUN))
        # The outcome is recorded before the worker marks the event done.
        await eventually(h.store.queue_depth, lambda depth: depth == 0)
    finally:
        await worker.stop(5)
    assert len(await h.runs(outcome=RunOutcome.DRY_RUN)) == 1


async def test_each_phase_releases_the_target_lock_for_the_next(
    make_harness: MakeHarness,
) -> None:
    rules = BUMP + "    on_resolved:\n      - action: test.bump\n"
    h = await make_harness(rules, dry_run=False, extra_actions=[Bump()])
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    await h.drain()
    await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T11:00:00Z")))
    await h.drain()
    # A lock left behind by one phase would hold the next (pending, waiting for the lock).
    first, second = sorted(await h.runs(), key=lambda r: r.starts_at)
    steps = (await h.store.get_run(first.id)).steps  # type: ignore[union-attr]
    assert [(s.phase, s.outcome) for s in steps] == [("run", "ok"), ("resolve", "ok")]
    assert second.outcome is RunOutcome.SUCCEEDED


async def test_an_alert_no_rule_matches_never_reaches_the_worker(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    unmatched = {"alertname": "DiskFull", "namespace": "shop", "instance": "db-1"}
    result = await h.intake.accept(notification(alert(unmatched), alert(labels())))
    assert (result.accepted, result.duplicates) == (2, 0)
    claimed = await h.store.claim_events(h.owner, 10, 30.0)
    assert [c.event.labels["alertname"] for c in claimed] == ["HighMemoryUsage"]
    for c in claimed:
        assert (await h.pipeline(c.event)).is_done
        await h.store.complete_event(c.event.id, h.owner, c.attempts)
    assert len(await h.runs(outcome=RunOutcome.DRY_RUN)) == 1
    # Its resolution still goes through the worker, which finds no run to close.
    await h.intake.accept(notification(alert(unmatched, status="resolved")))
    assert await h.drain() == 1
    assert await h.store.queue_depth() == 0


async def test_an_event_queued_before_a_rule_was_removed_is_skipped_by_the_worker(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    await h.intake.accept(notification(alert(labels())))
    h.reload_rules(RESTART.replace('alertname="HighMemoryUsage"', 'alertname="Other"'))
    assert await h.drain() == 1
    assert await h.runs() == []


class _Unreadable(dict[str, str]):
    def get(self, *args: object, **kwargs: object) -> str:
        raise RuntimeError("cannot read labels")


async def test_when_matching_at_intake_fails_the_event_is_queued_not_lost(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    # Settled means "stored done, never processed": a failure must not count as settled.
    assert h.pipeline.settled_at_intake(Status.FIRING, _Unreadable(alertname="x")) is None
    assert h.pipeline.settled_at_intake(Status.FIRING, {"alertname": "Other"}) == NO_RULE
