"""The target lock when an admission or a release reaches Redis late, after its client gave up
on it (GuardUnavailable) and the run was tried again, against a real Redis: a late admission
never takes the lock back from the retry, nor takes it again once the retry has released it, so
the retry's release frees the target; a late release never frees a later admission's lock. The
late command is held by a relay (``HeldRelay``) while the retry goes straight to the server, so
the order is the test's (tests/support/relay.py says why a frozen server cannot give it).

Clocks that disagree between replicas only ever delay one run on its own target: a live
admission that looks late is refused, never admitted without the lock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio

from receiver.guards.policy import Admission, GuardSettings, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import NamespacePolicy
from tests.support.guards import (
    OTHER,
    POD,
    admit_and_release,
    admitted_and_released,
    refused_by,
    request,
)
from tests.support.polling import eventually
from tests.support.redis import RedisServer
from tests.support.relay import HeldRelay

pytestmark = pytest.mark.redis

START = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def guards(redis_client: redis.asyncio.Redis) -> Guards:
    """The retry's guards: straight to the server."""
    return Guards(redis_client, NamespacePolicy(), GuardSettings())


@pytest.fixture
async def relay(redis_server: RedisServer, redis_url: str) -> AsyncIterator[HeldRelay]:
    async with HeldRelay(redis_server.host, redis_server.port) as held:
        yield held


def through(relay: HeldRelay, url: str) -> str:
    """``url`` (its user, password and database) with the relay for its server."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@" * bool(user) + f"127.0.0.1:{relay.port}"))


@pytest.fixture
async def late_guards(relay: HeldRelay, redis_url: str) -> AsyncIterator[Guards]:
    """The guards whose command will land late: through the relay, giving up after 0.5 s."""
    client = redis.asyncio.Redis.from_url(through(relay, redis_url))
    try:
        guards = Guards(client, NamespacePolicy(), GuardSettings(timeout_s=0.5))
        # Connected and the scripts cached on the server, so that what the relay holds later is
        # one EVALSHA, which the server runs when it arrives.
        await admit_and_release(guards, request(target=OTHER))
        yield guards
    finally:
        await client.aclose()


async def given_up(relay: HeldRelay, call: Awaitable[Any]) -> None:
    """``call`` times out on its client, its command held on the way to the server."""
    relay.hold()
    with pytest.raises(GuardUnavailable):
        await call


async def script_runs(client: redis.asyncio.Redis) -> int:
    """How many EVALSHA the server has run (every guard script is one, once cached)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def lands(relay: HeldRelay, client: redis.asyncio.Redis) -> None:
    """The held script reaches the server; returns once the server has run it (its reply
    may be lost with its client's connection: the server's count is what says)."""
    ran = await script_runs(client)
    relay.let_through()
    await eventually(lambda: script_runs(client), lambda n: n > ran, what="the late script's run")


async def test_an_admission_landing_after_the_retrys_leaves_the_retry_the_lock(
    relay: HeldRelay,
    late_guards: Guards,
    guards: Guards,
    redis_client: redis.asyncio.Redis,
) -> None:
    req = request(cooldown_s=60, max_runs=1, max_runs_per_s=60)
    await given_up(relay, late_guards.admit(req))
    retry = await guards.admit(req)
    assert retry.admitted, retry.refusal
    await lands(relay, redis_client)
    # Before: the late one wrote its token over the retry's (same run, re-entrant), the retry's
    # release found another token, and the target stayed locked for the lock's ttl.
    assert await guards.release(req, retry)
    # It changed nothing: it drew no fence either.
    assert await redis_client.get(guards.keys.fence(POD)) == str(retry.fence).encode()
    assert await admitted_and_released(guards, request(rule="other", disruptive=False))


async def test_an_admission_landing_after_the_retrys_release_leaves_the_lock_free(
    relay: HeldRelay,
    late_guards: Guards,
    guards: Guards,
    redis_client: redis.asyncio.Redis,
) -> None:
    req = request(cooldown_s=60, max_runs=1, max_runs_per_s=60)
    await given_up(relay, late_guards.admit(req))
    await admit_and_release(guards, req)
    await lands(relay, redis_client)
    # Before: the late one found the lock free and took it, for the lock's ttl.
    assert not await redis_client.exists(guards.keys.lock(POD))
    assert await admitted_and_released(guards, request(rule="other", disruptive=False))


async def test_a_release_landing_after_a_later_admission_of_the_run_leaves_its_lock(
    relay: HeldRelay,
    late_guards: Guards,
    guards: Guards,
    redis_client: redis.asyncio.Redis,
) -> None:
    """Exact-token release: a late one never frees the lock of the run's later admission (a
    retry after the release timed out), which would let another run act on the target."""
    req = request(cooldown_s=60, max_runs=1, max_runs_per_s=60)
    first = await late_guards.admit(req)
    assert first.admitted, first.refusal
    await given_up(relay, late_guards.release(req, first))
    later = await guards.admit(req)
    assert later.admitted, later.refusal
    await lands(relay, redis_client)
    assert req.run_id in refused_by(await guards.admit(request(rule="other")), "lock")
    assert await guards.release(req, later)
    assert await admitted_and_released(guards, request(rule="other", disruptive=False))


async def test_a_lock_of_the_older_token_format_is_reentered_and_released(
    guards: Guards, redis_client: redis.asyncio.Redis
) -> None:
    """An older replica's token (``<run id>/<32 hex>``, no issue time) during a rolling update:
    the run re-enters as before, and each token releases only itself."""
    req = request(disruptive=False)
    old_token = f"{req.run_id}/{'5a' * 16}"
    seconds, _ = await redis_client.time()
    await redis_client.set(guards.keys.lock(POD), f"{(seconds + 60) * 1000}|{old_token}")
    assert req.run_id in refused_by(await guards.admit(request(rule="other")), "lock")
    again = await guards.admit(req)
    assert again.admitted, again.refusal
    assert not await guards.release(req, Admission(True, lock_token=old_token))
    assert await guards.release(req, again)
    assert await admitted_and_released(guards, request(rule="other", disruptive=False))

    # Released by the token it holds, whichever format.
    await redis_client.set(guards.keys.lock(POD), f"{(seconds + 60) * 1000}|{old_token}")
    assert await guards.release(req, Admission(True, lock_token=old_token))
    assert await admitted_and_released(guards, req)


class Clock:
    """A replica's clock, moved by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


async def test_a_clock_behind_delays_its_run_and_never_admits_it_without_the_lock(
    redis_client: redis.asyncio.Redis,
) -> None:
    """Replica B's clock is 10 s behind A's. B's admission of a run that A admitted looks
    issued before A's: it is refused (waiting for the lock), not admitted beside A's token,
    whose release could then free the target while B acts; once B's clock passes A's token,
    it is admitted."""
    ahead, behind = Clock(START + timedelta(seconds=10)), Clock(START)
    a, b = (Guards(redis_client, NamespacePolicy(), clock=c) for c in (ahead, behind))
    req = request(disruptive=False)

    first = await a.admit(req)
    assert first.admitted, first.refusal
    reason = refused_by(await b.admit(req), "lock")
    assert "later admission of this run" in reason
    assert await a.release(req, first)
    assert "released the target" in refused_by(await b.admit(req), "lock")
    # Every other run finds the target free.
    assert await admitted_and_released(a, request(rule="other", disruptive=False))

    behind.at = ahead.at + timedelta(milliseconds=1)
    again = await b.admit(req)
    assert again.admitted, again.refusal
    assert req.run_id in refused_by(await a.admit(request(rule="other")), "lock")
    assert await b.release(req, again)
