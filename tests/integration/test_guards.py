"""Each guard against a real Redis: pause, namespace, cooldown, rate, budget, breaker and lock
each refuse with their name, a reason and a sensible retry_at (none when waiting cannot help),
and each lets the run through again once its condition ends; status reports them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis.asyncio

from receiver.model import GuardSpec, NamespacePolicy, Target
from tests.support.guards import (
    OTHER,
    POD,
    MakeGuards,
    _runs,
    admit_and_release,
    admitted_and_released,
    assert_retry_in,
    redis_now,
    refused_by,
    request,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.redis


async def test_admits_with_lock_token_and_increasing_fence(make_guards: MakeGuards) -> None:
    guards = make_guards()
    first = await admit_and_release(guards, request())
    second = await admit_and_release(guards, request(rule="other"))
    assert first.refusal is None
    assert first.lock_token
    assert second.lock_token
    assert first.lock_token != second.lock_token
    assert first.fence is not None
    assert second.fence is not None
    assert second.fence > first.fence


async def test_pause_refuses_everything_until_resumed(
    make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    guards = make_guards()
    assert await guards.pause(None, "maintenance window") is None
    admission = await guards.admit(request(disruptive=False))
    assert "maintenance window" in refused_by(admission, "pause")
    assert admission.refusal is not None
    assert admission.refusal.retry_at is None  # no end: waiting alone will not help
    # Precedence: the pause is reported before anything else, e.g. a denied namespace.
    denied = await guards.admit(request(target=Target("Deployment", "kube-system", "dns")))
    refused_by(denied, "pause")

    await guards.resume()
    await admit_and_release(guards, request())


async def test_timed_pause_has_retry_at_and_ends_by_itself(
    make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    guards = make_guards()
    until = await guards.pause(60, "deploy freeze")
    now = await redis_now(redis_client)
    assert until is not None
    admission = await guards.admit(request())
    refused_by(admission, "pause")
    assert_retry_in(admission, now, 60)
    assert admission.refusal is not None
    assert admission.refusal.retry_at == until

    await guards.pause(0.5, "short")
    refused_by(await guards.admit(request()), "pause")

    async def passes() -> bool:
        return (await guards.admit(request(rule=f"r{next(_runs)}", disruptive=False))).admitted

    await eventually(passes)


async def test_namespace_policy_refuses_for_good(make_guards: MakeGuards) -> None:
    guards = make_guards(NamespacePolicy(allow=("shop",)))
    for namespace in ("kube-system", "payments"):
        admission = await guards.admit(request(target=Target("Deployment", namespace, "x")))
        assert namespace in refused_by(admission, "namespace")
        assert admission.refusal is not None
        assert admission.refusal.retry_at is None
    await admit_and_release(guards, request())


async def test_cooldown_per_rule_and_target(
    make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    guards = make_guards()
    first = request(cooldown_s=60)
    await admit_and_release(guards, first)
    now = await redis_now(redis_client)

    again = await guards.admit(request(cooldown_s=60))
    assert first.run_id in refused_by(again, "cooldown")
    assert_retry_in(again, now, 60)

    # Another target, or another rule on the same target, has its own cooldown.
    await admit_and_release(guards, request(target=OTHER, cooldown_s=60))
    await admit_and_release(guards, request(rule="scale-workers", cooldown_s=60))
    # The run that started the cooldown may be admitted again (e.g. after its approval).
    await admit_and_release(guards, replace(first))


async def test_cooldown_expires(make_guards: MakeGuards) -> None:
    guards = make_guards()
    await admit_and_release(guards, request(cooldown_s=0.5))
    refused_by(await guards.admit(request(cooldown_s=0.5)), "cooldown")

    await eventually(lambda: admitted_and_released(guards, request(cooldown_s=0.5)))


async def test_rate_limit_drops_beyond_max_runs_in_window(
    make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    guards = make_guards()
    spec = GuardSpec(max_runs=2, max_runs_per_s=60.0)
    start = await redis_now(redis_client)
    await admit_and_release(guards, request(target=POD, spec=spec))
    await admit_and_release(guards, request(target=OTHER, spec=spec))

    third = await guards.admit(request(target=Target("Deployment", "shop", "third"), spec=spec))
    reason = refused_by(third, "rate")
    assert "2" in reason
    # The window frees a slot when the first admission leaves it, about a minute after it.
    assert_retry_in(third, start, 60)
    # Another rule has its own window.
    await admit_and_release(guards, request(rule="other-rule", spec=spec))


async def test_rate_window_slides(make_guards: MakeGuards) -> None:
    guards = make_guards()
    spec = GuardSpec(max_runs=1, max_runs_per_s=0.5)
    await admit_and_release(guards, request(spec=spec))
    refused_by(await guards.admit(request(target=OTHER, spec=spec)), "rate")

    await eventually(lambda: admitted_and_released(guards, request(target=OTHER, spec=spec)))


async def test_budget_counts_disruptive_actions_across_rules(
    make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    guards = make_guards(budget_count=2, budget_window_s=60)
    start = await redis_now(redis_client)
    await admit_and_release(guards, request(rule="a", target=POD))
    await admit_and_release(guards, request(rule="b", target=OTHER))
    # Non-disruptive actions are neither counted nor refused.
    await admit_and_release(guards, request(rule="c", disruptive=False))

    over = await guards.admit(request(rule="d", target=Target("StatefulSet", "db", "pg")))
    assert "disruptive" in refused_by(over, "budget")
    assert_retry_in(over, start, 60)
    status = await guards.status()
    assert status["budget"] == {"used": 2, "limit": 2, "window_s": 60}


async def test_a_zero_budget_refuses_for_good(make_guards: MakeGuards) -> None:
    guards = make_guards(budget_count=0)
    admission = await guards.admit(request())
    refused_by(admission, "budget")
    assert admission.refusal is not None
    assert admission.refusal.retry_at is None
    await admit_and_release(guards, request(disruptive=False))


async def test_breaker_opens_after_failures_and_closes_after_open_for(
    make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    guards = make_guards(breaker_failures=3, breaker_window_s=30, breaker_open_for_s=1.5)
    rule = "rollback-on-errors"
    assert await guards.record_result(rule, False) is None
    assert await guards.record_result(rule, False) is None
    await admit_and_release(guards, request(rule=rule))

    until = await guards.record_result(rule, False)
    now = await redis_now(redis_client)
    assert until is not None
    admission = await guards.admit(request(rule=rule))
    assert "breaker" in refused_by(admission, "breaker")
    assert_retry_in(admission, now, 1.5, slack=1.0)
    # Other rules are not affected.
    await admit_and_release(guards, request(rule="another", target=OTHER))

    status = await guards.status()
    assert status["breakers"][rule]["open"] is True
    assert status["breakers"][rule]["failures"] == 3

    await eventually(lambda: admitted_and_released(guards, request(rule=rule)))


async def test_success_does_not_erase_failures(make_guards: MakeGuards) -> None:
    guards = make_guards(breaker_failures=3, breaker_window_s=30, breaker_open_for_s=30)
    await guards.record_result("r", False)
    await guards.record_result("r", False)
    assert await guards.record_result("r", True) is None
    assert await guards.record_result("r", False) is not None
    refused_by(await guards.admit(request(rule="r")), "breaker")


async def test_lock_refuses_a_second_run_on_the_same_target_until_released(
    make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    guards = make_guards(lock_ttl_s=120)
    holder_req = request(rule="a")
    holder = await guards.admit(holder_req)
    assert holder.admitted
    now = await redis_now(redis_client)

    waiting_req = request(rule="b")
    waiting = await guards.admit(waiting_req)
    refused_by(waiting, "lock")
    assert_retry_in(waiting, now, 120)
    assert not await guards.release(waiting_req, waiting)  # a refusal holds nothing
    # Other targets are free.
    await admit_and_release(guards, request(rule="b", target=OTHER))

    assert await guards.release(holder_req, holder)
    assert not await guards.release(holder_req, holder)  # released once only
    after = await admit_and_release(guards, request(rule="b"))
    assert after.fence is not None
    assert holder.fence is not None
    assert after.fence > holder.fence


async def test_release_only_deletes_its_own_lock(make_guards: MakeGuards) -> None:
    guards = make_guards(lock_ttl_s=0.3)
    stale_req = request(rule="a")
    stale = await guards.admit(stale_req)
    assert stale.admitted

    async def taken() -> bool:
        return (await guards.admit(request(rule="b", run_id="run-new"))).admitted

    await eventually(taken)
    # The first holder's lock expired and "run-new" holds it now: the stale release is a no-op.
    assert not await guards.release(stale_req, stale)
    refused_by(await guards.admit(request(rule="c")), "lock")


async def test_status_reports_pause_breakers_and_budget(make_guards: MakeGuards) -> None:
    guards = make_guards(breaker_failures=2)
    empty = await guards.status()
    assert empty["paused"] is False
    assert empty["pause"] is None
    assert empty["breakers"] == {}
    assert empty["budget"]["used"] == 0

    await admit_and_release(guards, request())
    await guards.record_result("flaky", False)
    await guards.record_result("broken", False)
    await guards.record_result("broken", False)
    await guards.pause(600, "incident 42")
    status = await guards.status()
    assert status["paused"] is True
    assert status["pause"]["reason"] == "incident 42"
    assert status["pause"]["until"] is not None
    assert status["budget"]["used"] == 1
    assert status["breakers"]["flaky"] == {"open": False, "open_until": None, "failures": 1}
    assert status["breakers"]["broken"]["open"] is True
    assert status["breakers"]["broken"]["failures"] == 2
