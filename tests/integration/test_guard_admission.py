"""One admission against a real Redis, as a whole: a refusal has no side effects (it consumes
no cooldown, rate slot or budget), admission is atomic under concurrency (exactly one of many,
or exactly the rate), and the same run is admitted again with a new lock token and fence."""

from __future__ import annotations

import asyncio

import pytest

from receiver.model import GuardSpec, Target
from tests.support.guards import (
    MakeGuards,
    admitted_and_released,
    refused_by,
    request,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.redis


async def test_refusal_has_no_side_effects(make_guards: MakeGuards) -> None:
    guards = make_guards(budget_count=1, breaker_failures=1, breaker_open_for_s=1.0)
    rule = "restart"
    await guards.record_result(rule, False)
    limited = GuardSpec(cooldown_s=60, max_runs=1, max_runs_per_s=60)
    refused_by(await guards.admit(request(rule=rule, spec=limited)), "breaker")
    # A lock held by a non-disruptive run of another rule refuses at the last guard.
    holder_req = request(rule="inspect", disruptive=False)
    holder = await guards.admit(holder_req)
    assert holder.admitted
    late = await guards.admit(request(rule="other", cooldown_s=60))
    refused_by(late, "lock")
    await guards.release(holder_req, holder)

    # Neither refusal consumed cooldown, rate or budget: once the breaker closes, it passes.
    await eventually(lambda: admitted_and_released(guards, request(rule=rule, spec=limited)))
    assert (await guards.status())["budget"]["used"] == 1


async def test_concurrent_admissions_for_one_rule_and_target_admit_exactly_one(
    make_guards: MakeGuards,
) -> None:
    guards = make_guards()
    results = await asyncio.gather(*(guards.admit(request(cooldown_s=60)) for _ in range(20)))
    admitted = [a for a in results if a.admitted]
    assert len(admitted) == 1
    assert {a.refusal.guard for a in results if a.refusal is not None} == {"cooldown"}


async def test_concurrent_admissions_respect_the_rate_exactly(make_guards: MakeGuards) -> None:
    guards = make_guards()
    results = await asyncio.gather(
        *(
            guards.admit(
                request(target=Target("Pod", "shop", f"p{i}"), max_runs=5, max_runs_per_s=60)
            )
            for i in range(20)
        )
    )
    assert sum(a.admitted for a in results) == 5
    assert {a.refusal.guard for a in results if a.refusal is not None} == {"rate"}


async def test_same_run_is_readmitted_with_a_new_token_and_fence(make_guards: MakeGuards) -> None:
    guards = make_guards(budget_count=1)
    req = request(cooldown_s=60, max_runs=1, max_runs_per_s=60)
    first = await guards.admit(req)
    second = await guards.admit(req)  # e.g. the re-check after an approval
    assert first.admitted
    assert second.admitted
    assert second.lock_token != first.lock_token
    assert first.fence is not None
    assert second.fence is not None
    assert second.fence > first.fence
    assert not await guards.release(req, first)  # superseded
    other = await guards.admit(request(rule="other", disruptive=False))
    assert req.run_id in refused_by(other, "lock")
    assert await guards.release(req, second)
    assert (await guards.status())["budget"]["used"] == 1
