"""The guards through the whole pipeline on real PostgreSQL and Redis: cooldown, rate limit,
global budget (only steps that change something draw on it), circuit breaker, pause and the
namespace policy refuse a run, its steps recorded not run; with Redis down nothing runs, and
the event runs once it is back."""

from __future__ import annotations

from receiver.guards.policy import GuardSettings
from receiver.model import NamespacePolicy, RunOutcome
from receiver.store import RunRecord
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.pipeline_restart import BUMP, RESTART, RESTART_RULE, Bump, labels
from tests.support.redis import RedisServer


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


async def test_rate_limit_drops_runs_over_the_limit(make_harness: MakeHarness) -> None:
    h = await make_harness(RESTART_RULE.replace("GUARDS", "{max_runs: {count: 2, per: 1h}}"))
    for name in ("a", "b", "c"):
        await h.intake.accept(notification(alert(labels(name))))
    await h.drain()
    run = await _refused(h)
    assert run.refusal_guard == "rate"
    assert run.retry_at is not None


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
