"""serve's start-up write check (``receiver.redis_connect.write_refusal``) never stops a start:
whatever the probe raises or however long it waits, the answer is a line to log. The replies
of real servers (READONLY, NOREPLICAS, NOPERM) are in tests/integration/test_guards_redis.py
and test_serve_redis_modes.py."""

from __future__ import annotations

import asyncio

import redis.asyncio

from receiver.config.redis_mode import RedisMode
from receiver.redis_connect import GuardRedis, write_refusal

# Built, never connected: the probes below stand in for Guards.probe.
BUILT = GuardRedis(redis.asyncio.Redis(), "127.0.0.1:6379", RedisMode.STANDALONE)


async def test_a_probe_that_takes_the_write_says_nothing() -> None:
    async def fine() -> None:
        return None

    assert await write_refusal(BUILT, fine, 1) is None


async def test_an_unexpected_error_of_the_probe_is_said_not_raised() -> None:
    async def broken() -> None:
        raise ValueError("no such thing")

    said = await write_refusal(BUILT, broken, 1)
    assert said is not None
    assert "(127.0.0.1:6379) does not take a write: ValueError: no such thing;" in said


async def test_a_probe_that_never_answers_is_cut_at_the_readiness_timeout() -> None:
    async def hung() -> None:
        await asyncio.Event().wait()

    said = await write_refusal(BUILT, hung, 0.05, opening_s=0.1)
    assert said is not None
    assert "no answer within http.readiness_timeout (REMEDIATOR_READINESS_TIMEOUT), 0.05 s" in said


async def test_a_first_write_slower_than_the_readiness_timeout_is_timed_again() -> None:
    """The first write may open a connection (a handshake of round trips of its own): within
    ``opening_s`` it is not yet a refusal; the write made again on the open connection decides.
    A server that takes writes only slower than the readiness timeout is still said so."""
    waits = [0.3, 0.0]

    async def opening_then_quick() -> None:
        await asyncio.sleep(waits.pop(0))

    assert await write_refusal(BUILT, opening_then_quick, 0.2, opening_s=1) is None
    assert waits == []

    async def always_slow() -> None:
        await asyncio.sleep(0.3)

    said = await write_refusal(BUILT, always_slow, 0.2, opening_s=1)
    assert said is not None
    assert "no answer within http.readiness_timeout (REMEDIATOR_READINESS_TIMEOUT), 0.2 s" in said
