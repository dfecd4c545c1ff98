"""The whole path on real PostgreSQL and Redis: intake -> store -> worker -> engine -> guards ->
action (dry-run, no cluster) -> record. Kubernetes effects are tested in
test_pipeline_kubernetes.py against the real API server."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from pydantic import BaseModel
from structlog.testing import capture_logs

from receiver.engine import NO_RULE
from receiver.guards.policy import GuardSettings
from receiver.model import NamespacePolicy, RunOutcome, Status, Target
from receiver.store import RunRecord
from receiver.store.verification import CLOCK_SKEW_S
from receiver.worker import Worker
from remediations.base import ActionContext, Outcome, Result
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.polling import eventually
from tests.support.redis import RedisServer
from tests.support.rules import Restart

RESTART_RULE = RESTART_WEB + "    guards: GUARDS\n"


RESTART = RESTART_RULE.replace("GUARDS", "{}")


def labels(name: str = "web", namespace: str = "shop", **extra: str) -> dict[str, str]:
    return {
        "alertname": "HighMemoryUsage",
        "namespace": namespace,
        "deployment": name,
        "severity": "warning",
        **extra,
    }


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


async def test_concurrent_workers_on_duplicates_still_make_one_run(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    starts = [f"2026-11-25T10:00:0{i}Z" for i in range(3)]
    # Three episodes of one alert, each delivered by two HA peers, claimed by two workers.
    for s in starts:
        for url in ("http://am-0:9093", "http://am-1:9093"):
            await h.intake.accept(notification(alert(labels(), starts_at=s), external_url=url))
    h2 = dataclasses.replace(h, owner="other-worker")
    await asyncio.gather(h.drain(), h2.drain())
    runs = await h.runs()
    assert len(runs) == 3
    assert len({(r.fingerprint, r.starts_at) for r in runs}) == 3


async def test_resolve_closes_the_run_with_its_time_to_resolve(make_harness: MakeHarness) -> None:
    rules = RESTART + "    verify: {resolved_within: 10m}\n"
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    (created,) = await h.runs()
    # As if the run had been created 100 s ago: the alert resolves (its endsAt, now past)
    # 95.5 s after that, which is the time to resolve. (An endsAt before the run's creation
    # would be clamped to 0, and one still ahead dated now: neither would prove anything.)
    await backdate(h, created.id, seconds=100)
    ends_at = created.created_at - timedelta(seconds=100) + timedelta(seconds=95.5)
    resolved = alert(labels(), status="resolved", ends_at=ends_at.isoformat())
    await h.intake.accept(notification(resolved))
    await h.drain()
    (run,) = await h.runs()
    assert run.resolved_at == ends_at
    assert run.time_to_resolve_s == pytest.approx(95.5, abs=0.001)


async def backdate(h: Harness, run_id: str, *, seconds: float) -> None:
    """Move a run's creation and verification deadline ``seconds`` into the past."""
    await h.store._pool.execute(
        """UPDATE runs SET created_at = created_at - make_interval(secs => $2),
                          verify_deadline = verify_deadline - make_interval(secs => $2)
           WHERE id = $1::uuid""",
        run_id,
        seconds,
    )


async def test_the_resolution_is_dated_by_its_ends_at_whatever_the_workers_clock(
    make_harness: MakeHarness,
) -> None:
    """The store dates a resolution no later than its own now, not the worker's: a worker
    clock an hour behind keeps a resolution that has passed where the alert put it."""
    rules = RESTART + "    verify: {resolved_within: 10m}\n"
    h = await make_harness(rules, clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    (created,) = await h.runs()
    await backdate(h, created.id, seconds=60)
    ends_at = created.created_at - timedelta(seconds=30)
    await h.intake.accept(
        notification(alert(labels(), status="resolved", ends_at=ends_at.isoformat()))
    )
    await h.drain()
    (run,) = await h.runs()
    assert run.resolved_at == ends_at
    assert run.time_to_resolve_s == pytest.approx(30, abs=0.001)


async def test_an_ends_at_a_little_ahead_is_kept_as_sent(make_harness: MakeHarness) -> None:
    """Within CLOCK_SKEW_S of the store's clock an endsAt ahead is a sender's clock running a
    little ahead of ours: the resolution keeps its time."""
    rules = RESTART + "    verify: {resolved_within: 10m}\n"
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    (created,) = await h.runs()
    ends_at = created.created_at + timedelta(seconds=CLOCK_SKEW_S / 2)
    await h.intake.accept(
        notification(alert(labels(), status="resolved", ends_at=ends_at.isoformat()))
    )
    await h.drain()
    (run,) = await h.runs()
    assert run.resolved_at == ends_at
    assert run.time_to_resolve_s == pytest.approx(CLOCK_SKEW_S / 2, abs=0.001)


@pytest.mark.parametrize(
    "ends_at",
    [
        # Python's largest datetime: asyncpg sends it as PostgreSQL's infinity, whose time to
        # resolve jsonb cannot hold (closing the run failed until the event was dead).
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.999999999Z",
        "2999-01-01T00:00:00+01:00",
        # Just past the skew a sender's clock may have: computed when the test runs.
        "past the skew",
    ],
)
async def test_an_ends_at_still_ahead_dates_the_resolution_when_it_is_read(
    make_harness: MakeHarness, ends_at: str
) -> None:
    rules = RESTART + "    verify: {resolved_within: 10m}\n"
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    if ends_at == "past the skew":
        ends_at = (datetime.now(UTC) + timedelta(seconds=CLOCK_SKEW_S + 60)).isoformat()
    before = datetime.now(UTC)
    result = await h.intake.accept(
        notification(alert(labels(), status="resolved", ends_at=ends_at))
    )
    assert result.accepted == 1
    assert await h.drain() == 1
    after = datetime.now(UTC)
    (run,) = await h.runs()
    assert run.resolved_at is not None
    assert before <= run.resolved_at <= after
    assert run.time_to_resolve_s is not None
    assert 0 <= run.time_to_resolve_s <= (after - run.created_at).total_seconds()
    assert await h.store.dead_counts() == {"events": 0, "jobs": 0}


async def test_resolved_then_late_firing_duplicate_creates_nothing(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    # Ordering is not guaranteed: the resolved notification overtakes a delayed firing one.
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    await h.drain()
    result = await h.intake.accept(notification(alert(labels())))
    assert result.accepted == 1  # stored (nothing accepted is lost) ...
    await h.drain()
    assert await h.runs() == []  # ... but it is a late duplicate of a resolved episode


async def test_a_new_episode_after_resolve_is_a_new_run(make_harness: MakeHarness) -> None:
    h = await make_harness(RESTART)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T11:00:00Z")))
    await h.drain()
    runs = await h.runs()
    assert sorted(r.starts_at for r in runs) == [
        "2026-11-25T10:00:00.123456789Z",
        "2026-11-25T11:00:00Z",
    ]


async def test_a_backlog_never_acts_on_an_episode_that_already_resolved(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    # The worker was behind: by the time it reaches the firing event, the resolve is stored.
    await h.intake.accept(notification(alert(labels())))
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    assert await h.drain() == 2
    assert await h.runs() == []


async def _refused(h: Harness) -> RunRecord:
    refused = await h.runs(outcome=RunOutcome.REFUSED)
    assert len(refused) == 1, [(r.outcome, r.refusal_guard) for r in await h.runs()]
    run = refused[0]
    steps = (await h.store.get_run(run.id)).steps  # type: ignore[union-attr]
    # Not executed, and not left "pending" for ever: they will never run.
    assert steps
    assert all(s.outcome == "not_run" for s in steps), "a refused run must not execute a step"
    assert all(
        s.message == f"not run: the {run.refusal_guard} guard refused the run" for s in steps
    )
    return run


async def test_cooldown_refuses_the_next_episode_on_the_same_target(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART_RULE.replace("GUARDS", "{cooldown: 15m}"))
    await h.intake.accept(notification(alert(labels())))
    await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T10:30:00Z")))
    # Another target is not cooled down.
    await h.intake.accept(notification(alert(labels("api"))))
    await h.drain()
    run = await _refused(h)
    assert run.refusal_guard == "cooldown"
    assert run.target.name == "web"
    assert run.retry_at is not None
    assert run.refusal_reason
    assert len(await h.runs(outcome=RunOutcome.DRY_RUN)) == 2


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


async def test_rate_limit_drops_runs_over_the_limit(make_harness: MakeHarness) -> None:
    h = await make_harness(RESTART_RULE.replace("GUARDS", "{max_runs: {count: 2, per: 1h}}"))
    for name in ("a", "b", "c"):
        await h.intake.accept(notification(alert(labels(name))))
    await h.drain()
    run = await _refused(h)
    assert run.refusal_guard == "rate"
    assert run.retry_at is not None


class Bump(Restart):
    """A disruptive step that changes something (it needs no client, so it never runs dry)."""

    name = "test.bump"
    disruptive = True

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        return Result(Outcome.OK, "bumped")


BUMP = RESTART.replace("kubernetes.rollout_restart", "test.bump")


async def test_global_budget_of_disruptive_actions(make_harness: MakeHarness) -> None:
    budget = GuardSettings(budget_count=1, budget_window_s=3600)
    h = await make_harness(BUMP, guard_settings=budget, dry_run=False, extra_actions=[Bump()])
    await h.intake.accept(notification(alert(labels("a"))))
    await h.intake.accept(notification(alert(labels("b"))))
    await h.drain()
    run = await _refused(h)
    assert run.refusal_guard == "budget"


async def test_steps_that_run_dry_do_not_draw_on_the_budget(make_harness: MakeHarness) -> None:
    # No cluster credentials: the restarts run dry, disrupt nothing, and leave the budget whole.
    budget = GuardSettings(budget_count=1, budget_window_s=3600)
    h = await make_harness(RESTART, guard_settings=budget, dry_run=False)
    await h.intake.accept(notification(alert(labels("a"))))
    await h.intake.accept(notification(alert(labels("b"))))
    await h.drain()
    assert sorted(r.outcome for r in await h.runs()) == [RunOutcome.DRY_RUN] * 2
    assert (await h.guards.status())["budget"]["used"] == 0


async def test_circuit_breaker_refuses_a_failing_rule(make_harness: MakeHarness) -> None:
    h = await make_harness(RESTART, guard_settings=GuardSettings(breaker_failures=2))
    for _ in range(2):
        await h.guards.record_result("restart-web", False)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    run = await _refused(h)
    assert run.refusal_guard == "breaker"
    assert run.retry_at is not None


async def test_pause_refuses_everything_until_resumed(make_harness: MakeHarness) -> None:
    h = await make_harness(RESTART)
    await h.guards.pause(None, "maintenance window")
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    run = await _refused(h)
    assert run.refusal_guard == "pause"
    assert run.retry_at is None  # paused without an end: waiting alone will not help
    await h.guards.resume()
    await h.intake.accept(notification(alert(labels("api"))))
    await h.drain()
    assert len(await h.runs(outcome=RunOutcome.DRY_RUN)) == 1


async def test_namespace_outside_policy_never_runs(make_harness: MakeHarness) -> None:
    h = await make_harness(RESTART, policy=NamespacePolicy(allow=("shop",)))
    await h.intake.accept(notification(alert(labels(namespace="payments"))))
    # A hostile label value cannot steer the target either.
    await h.intake.accept(notification(alert(labels(namespace="shop/../kube-system"))))
    await h.drain()
    assert await h.runs() == []


async def test_redis_down_means_nothing_runs_and_the_event_runs_once_it_is_back(
    make_harness: MakeHarness, redis_controlled: RedisServer
) -> None:
    h = await make_harness(RESTART)
    await h.intake.accept(notification(alert(labels())))
    redis_controlled.stop()
    try:
        assert await h.drain() == 0  # fail closed: the event goes back to pending
        (run,) = await h.runs()
        assert run.outcome is RunOutcome.PENDING
        steps = (await h.store.get_run(run.id)).steps  # type: ignore[union-attr]
        assert all(s.outcome == "pending" for s in steps)
        # Intake keeps accepting while the guards are down.
        assert (await h.intake.accept(notification(alert(labels("api"))))).accepted == 1
    finally:
        redis_controlled.start()
    # The retry delay is a few seconds; make the released events due now instead of waiting.
    async with h.store._pool.acquire() as conn:
        await conn.execute("UPDATE alert_events SET not_before = now() WHERE state = 'pending'")
    assert await h.drain() == 2
    runs = await h.runs()
    assert sorted((r.target.name, r.outcome) for r in runs) == [
        ("api", RunOutcome.DRY_RUN),
        ("web", RunOutcome.DRY_RUN),
    ]


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


async def test_a_run_interrupted_by_a_crash_is_resumed_from_its_unfinished_steps(
    make_harness: MakeHarness,
) -> None:
    rules = """
rules:
  - name: two-steps
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
      - action: kubernetes.scale
        params: {delta: 1, max: 5}
"""
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    (claimed,) = await h.store.claim_events("crashed-worker", 1, 30.0)
    event = claimed.event
    # What a worker leaves behind when it dies after its first step: the run admitted and
    # RUNNING, step 0 done, step 1 still pending, the event claimed and never completed.
    run_id = await h.store.create_run(
        rule="two-steps", event=event, target=Target("Deployment", "shop", "web"), dry_run=True
    )
    assert run_id is not None
    await h.store.record_step(
        run_id, idx=0, action="kubernetes.rollout_restart", outcome="dry_run", params={}
    )
    await h.store.record_step(
        run_id, idx=1, action="kubernetes.scale", outcome="pending", params={"delta": 1, "max": 5}
    )
    await h.store.set_run_outcome(run_id, RunOutcome.RUNNING)

    disposition = await h.pipeline(event)  # the event, reclaimed by another worker

    assert disposition.is_done
    run = await h.store.get_run(run_id)
    assert run is not None
    assert run.outcome is RunOutcome.DRY_RUN
    assert [(s.idx, s.outcome) for s in run.steps] == [(0, "dry_run"), (1, "dry_run")]
    assert len(await h.runs()) == 1  # resumed, not planned a second time


async def test_on_resolved_steps_survive_a_crash_between_close_and_run(
    make_harness: MakeHarness,
) -> None:
    rules = """
rules:
  - name: scale-workers
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.scale
        params: {delta: 2, max: 5}
    on_resolved:
      - action: kubernetes.scale
        params: {restore: true, max: 5}
"""
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    (run,) = await h.runs()
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    (claimed,) = await h.store.claim_events("crashed-worker", 1, 30.0)
    # The worker recorded the on_resolved step and closed the run, then died.
    await h.store.record_step(
        run.id,
        idx=0,
        phase="resolve",
        action="kubernetes.scale",
        outcome="pending",
        params={"restore": True, "max": 5},
    )
    assert await h.store.close_run(run.id, run.created_at)

    assert (await h.pipeline(claimed.event)).is_done

    record = await h.store.get_run(run.id)
    assert record is not None
    assert [(s.phase, s.outcome) for s in record.steps] == [
        ("run", "dry_run"),
        ("resolve", "dry_run"),
    ]


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
