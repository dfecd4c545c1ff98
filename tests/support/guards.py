"""What the guard tests share, against a real Redis: two targets, an admission request with
a fresh run id, the ``make_guards`` fixture (guards on the test's flushed database), Redis's own
clock, and the checks of an admission or a refusal (its guard, its retry_at)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
import redis.asyncio

from receiver.guards.policy import Admission, AdmissionRequest, GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, Target

POD = Target("Deployment", "shop", "checkout")


OTHER = Target("Deployment", "shop", "cart")


_runs = count(1)


MakeGuards = Callable[..., Guards]


@pytest.fixture
def make_guards(redis_client: redis.asyncio.Redis) -> MakeGuards:
    def make(policy: NamespacePolicy | None = None, **settings: Any) -> Guards:
        return Guards(redis_client, policy or NamespacePolicy(), GuardSettings(**settings))

    return make


def request(
    rule: str = "restart-on-high-memory",
    target: Target = POD,
    *,
    disruptive: bool = True,
    run_id: str | None = None,
    spec: GuardSpec | None = None,
    cooldown_s: float | None = None,
    max_runs: int | None = None,
    max_runs_per_s: float | None = None,
) -> AdmissionRequest:
    return AdmissionRequest(
        run_id=run_id or f"run-{next(_runs)}",
        rule=rule,
        target=target,
        disruptive=disruptive,
        spec=spec or GuardSpec(cooldown_s, max_runs, max_runs_per_s),
    )


async def redis_now(client: redis.asyncio.Redis) -> datetime:
    seconds, micros = await client.time()
    return datetime.fromtimestamp(seconds + micros / 1e6, tz=UTC)


async def admit_and_release(guards: Guards, req: AdmissionRequest) -> Admission:
    admission = await guards.admit(req)
    assert admission.admitted, admission.refusal
    assert await guards.release(req, admission)
    return admission


async def admitted_and_released(guards: Guards, req: AdmissionRequest) -> bool:
    """Whether ``req`` is admitted now (a probe for ``eventually``); released if it was."""
    admission = await guards.admit(req)
    if admission.admitted:
        assert await guards.release(req, admission)
    return admission.admitted


def refused_by(admission: Admission, guard: str) -> str:
    assert not admission.admitted
    assert admission.refusal is not None
    assert admission.refusal.guard == guard, admission.refusal
    assert admission.lock_token is None
    assert admission.fence is None
    return admission.refusal.reason


def assert_retry_in(
    admission: Admission, now: datetime, seconds: float, slack: float = 3.0
) -> None:
    assert admission.refusal is not None
    retry_at = admission.refusal.retry_at
    assert retry_at is not None
    assert retry_at.tzinfo is not None
    assert now + timedelta(seconds=seconds - slack) <= retry_at
    assert retry_at <= now + timedelta(seconds=seconds + slack)
