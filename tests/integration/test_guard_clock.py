"""The guards on an injected clock (``Guards(clock=...)``, what ``remediator test`` plays a
timeline with), against a real Redis: every expiry is decided from the stored until-times, so
jumping the clock forward by hours ends cooldowns, locks, breakers, pauses and windows, with no
real time passing; and values written by the previous version (no until-time) still hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
import redis.asyncio

from receiver.guards.policy import Admission, AdmissionRequest, GuardKeys, GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, Target

pytestmark = pytest.mark.redis

POD = Target("Deployment", "shop", "checkout")
START = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)
_ids = count(1)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime = START) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


def request(
    rule: str = "restart", *, spec: GuardSpec | None = None, disruptive: bool = True
) -> AdmissionRequest:
    return AdmissionRequest(f"run-{next(_ids)}", rule, POD, disruptive, spec or GuardSpec())


def guards_on(client: redis.asyncio.Redis, clock: Clock, **settings: float) -> Guards:
    prefix = f"clock-test-{next(_ids)}:"
    return Guards(
        client,
        NamespacePolicy(),
        GuardSettings(key_prefix=prefix, **settings),  # type: ignore[arg-type]
        clock=clock,
    )


def refusal(admission: Admission) -> tuple[str, datetime | None]:
    assert not admission.admitted
    assert admission.refusal is not None
    return admission.refusal.guard, admission.refusal.retry_at


async def admitted(guards: Guards, req: AdmissionRequest) -> None:
    admission = await guards.admit(req)
    assert admission.admitted, admission.refusal
    assert await guards.release(req, admission)


async def test_a_cooldown_ends_at_its_until_time_on_the_injected_clock(
    redis_client: redis.asyncio.Redis,
) -> None:
    clock = Clock()
    guards = guards_on(redis_client, clock)
    spec = GuardSpec(cooldown_s=3600)
    await admitted(guards, request(spec=spec))
    clock.advance(minutes=59, seconds=59)
    assert refusal(await guards.admit(request(spec=spec))) == (
        "cooldown",
        START + timedelta(hours=1),
    )
    clock.advance(seconds=1)
    await admitted(guards, request(spec=spec))
    # Real time did not pass: the key is still there, and only the until-time let it pass.
    assert await redis_client.exists(guards.keys.cooldown("restart", POD))


async def test_a_lock_expires_on_the_injected_clock_and_is_taken_over(
    redis_client: redis.asyncio.Redis,
) -> None:
    clock = Clock()
    guards = guards_on(redis_client, clock, lock_ttl_s=600)
    stale_req = request("a", disruptive=False)
    stale = await guards.admit(stale_req)
    assert stale.admitted
    clock.advance(minutes=5)
    assert refusal(await guards.admit(request("b", disruptive=False))) == (
        "lock",
        START + timedelta(minutes=10),
    )
    clock.advance(minutes=5)
    newer_req = request("c", disruptive=False)
    newer = await guards.admit(newer_req)
    assert newer.admitted
    assert stale.fence is not None
    assert newer.fence is not None
    assert newer.fence > stale.fence
    # The stale holder cannot release the lock another run took over.
    assert not await guards.release(stale_req, stale)
    assert await guards.release(newer_req, newer)


async def test_the_breaker_opens_and_closes_on_the_injected_clock(
    redis_client: redis.asyncio.Redis,
) -> None:
    clock = Clock()
    guards = guards_on(
        redis_client, clock, breaker_failures=2, breaker_window_s=3600, breaker_open_for_s=1800
    )
    assert await guards.record_result("flaky", False) is None
    clock.advance(minutes=10)
    until = await guards.record_result("flaky", False)
    assert until == START + timedelta(minutes=40)
    status = await guards.status()
    assert status["breakers"]["flaky"]["open"] is True
    assert status["now"] == (START + timedelta(minutes=10)).isoformat()
    assert refusal(await guards.admit(request("flaky"))) == ("breaker", until)

    clock.advance(minutes=30)
    await admitted(guards, request("flaky"))
    assert (await guards.status())["breakers"]["flaky"]["open"] is False
    # Half-open: the failures are still inside the window, one more opens it again.
    assert await guards.record_result("flaky", False) == START + timedelta(minutes=70)
    # An hour and a half later the window holds one failure only: it stays closed.
    clock.advance(hours=3)
    assert await guards.record_result("flaky", False) is None


async def test_a_timed_pause_ends_on_the_injected_clock(redis_client: redis.asyncio.Redis) -> None:
    clock = Clock()
    guards = guards_on(redis_client, clock)
    until = await guards.pause(2 * 3600, "freeze")
    assert until == START + timedelta(hours=2)
    assert refusal(await guards.admit(request())) == ("pause", until)
    assert (await guards.status())["pause"]["since"] == START.isoformat()
    clock.advance(hours=2)
    await admitted(guards, request())
    assert (await guards.status())["paused"] is False


async def test_rate_and_budget_windows_slide_on_the_injected_clock(
    redis_client: redis.asyncio.Redis,
) -> None:
    clock = Clock()
    guards = guards_on(redis_client, clock, budget_count=2, budget_window_s=3600)
    spec = GuardSpec(max_runs=1, max_runs_per_s=1800)
    await admitted(guards, request("r", spec=spec))
    clock.advance(minutes=10)
    assert refusal(await guards.admit(request("r", spec=spec))) == (
        "rate",
        START + timedelta(minutes=30),
    )
    await admitted(guards, request("other"))
    assert refusal(await guards.admit(request("third")))[0] == "budget"
    assert (await guards.status())["budget"]["used"] == 2
    clock.advance(hours=1)
    await admitted(guards, request("r", spec=spec))
    assert (await guards.status())["budget"]["used"] == 1


async def test_values_written_without_an_until_time_still_hold_by_their_ttl(
    redis_client: redis.asyncio.Redis,
) -> None:
    """A key the previous version wrote (a bare run id or token, ended by its TTL) during a
    rolling update: still refuses, with a retry_at from its TTL, and its lock is released."""
    clock = Clock()
    guards = guards_on(redis_client, clock)
    keys = GuardKeys(guards.settings.key_prefix)
    await redis_client.set(keys.cooldown("restart", POD), "run-old", px=60_000)
    guard, retry_at = refusal(await guards.admit(request(spec=GuardSpec(cooldown_s=60))))
    assert guard == "cooldown"
    assert retry_at is not None
    assert START < retry_at <= START + timedelta(seconds=60)

    lock_key = keys.lock(POD)
    await redis_client.set(lock_key, "run-old/abc123", px=60_000)
    assert refusal(await guards.admit(request("x", disruptive=False)))[0] == "lock"
    old = AdmissionRequest("run-old", "x", POD, False, GuardSpec())
    assert await guards.release(old, Admission(True, lock_token="run-old/abc123"))
    assert not await redis_client.exists(lock_key)


async def test_without_a_clock_the_server_time_decides(redis_client: redis.asyncio.Redis) -> None:
    """The service passes no clock: the scripts read TIME, and a clock far from it is not
    used by accident."""
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings(key_prefix="no-clock:"))
    spec = GuardSpec(cooldown_s=60)
    await admitted(guards, request(spec=spec))
    _, retry_at = refusal(await guards.admit(request(spec=spec)))
    seconds, micros = await redis_client.time()
    server_now = datetime.fromtimestamp(seconds + micros / 1e6, tz=UTC)
    assert retry_at is not None
    assert server_now < retry_at <= server_now + timedelta(seconds=61)
    status = await guards.status()
    assert abs(datetime.fromisoformat(status["now"]) - server_now) < timedelta(seconds=5)
