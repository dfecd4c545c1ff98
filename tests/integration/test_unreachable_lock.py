"""The target lock while a step waits for its system (receiver/pipeline/unreachable.py).

A pass whose step could not reach its system gives the target lock back as it ends, and the
retry takes it again at its admission. So the lock is free between the retries: another run
on the same target is admitted meanwhile and acts, holding the lock itself, and the waiting
run, taken up once its system is back, is admitted again and holds the lock as its step acts.
Released on purpose: the step has not acted and plans again from live state when it runs (an
``http.call`` renders and sends afresh; a Kubernetes step reads the object again, an approved
one checks its approved preconditions), and the wait may last the whole bound (5 minutes, an
undo's 30): holding the lock that long would hold every other run on the target behind a
system nobody can reach, runs that may find their own way (another endpoint, a database that
is up) first.

The endpoint is a real local HTTP server whose socket is bound, and refuses connections, until
the test makes it listen; it reads the lock in Redis as each request arrives.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from receiver.model import RunOutcome
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from remediations.targets import Target
from tests.integration.test_pause_between_steps import Hook
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """\
rules:
  - name: flush
    match: ['alertname="CacheStale"']
    target: {kind: HttpEndpoint, name: flush}
    steps:
      - action: http.call
        params: {body: {service: "{{ labels.service }}"}}
        approval: never
  - name: warm
    match: ['alertname="CacheCold"']
    target: {kind: HttpEndpoint, name: flush}
    steps:
      - action: test.endpoint_hook
        params: {}
        approval: never
"""
FLUSH = Target("HttpEndpoint", "", "flush")
FAST = HttpPolicy(timeout=2.0, attempts=2, initial_wait=0.01, max_wait=0.01, max_retry_after=1)


class EndpointHook(Hook):
    """``test.hook`` on an HttpEndpoint: another rule's step on the same target."""

    name: ClassVar[str] = "test.endpoint_hook"
    target_kinds: ClassVar[frozenset[str]] = frozenset({"HttpEndpoint"})


@pytest.fixture
def bound() -> Iterator[socket.socket]:
    """A loopback socket bound and not listening: connections to its port are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def due_now(h: Harness) -> None:
    """The events held back are due at once (their retry delay passed)."""
    await h.store._pool.execute(
        "UPDATE alert_events SET not_before = remediator_now() WHERE state = 'pending'"
    )


async def test_the_lock_is_free_while_a_step_waits_and_held_again_when_it_acts(
    make_harness: MakeHarness, session: aiohttp.ClientSession, bound: socket.socket
) -> None:
    port = bound.getsockname()[1]
    endpoints = HttpEndpoints(
        {"flush": Endpoint("flush", f"http://127.0.0.1:{port}/flush", {}, FAST)}, session
    )
    hook = EndpointHook()
    h = await make_harness(
        RULES,
        clients={"http": endpoints},
        dry_run=False,
        # The waiting event is not due again until the test says so (``due_now``): another
        # alert's event goes first, as it would in the minutes of an outage.
        guards_down_retry_s=3600,
        extra_actions=[hook],
    )
    redis = h.guards.redis
    assert isinstance(redis, Redis)
    lock = h.guards.keys.lock(FLUSH)

    await h.intake.accept(notification(alert({"alertname": "CacheStale", "service": "web"})))
    await h.drain()
    (waiting,) = await h.runs(rule="flush")
    first = await h.store.get_run(waiting.id)
    assert first is not None
    assert first.steps[0].outcome == "pending", first.steps[0].message
    assert not await redis.exists(lock)  # given back as the pass ended

    # Another run on the target is admitted meanwhile, and acts holding the lock.
    held_by_other: list[bytes | str | None] = []

    async def read_lock() -> None:
        held_by_other.append(await redis.get(lock))

    hook.hook = read_lock
    await h.intake.accept(notification(alert({"alertname": "CacheCold", "service": "web"})))
    await h.drain()
    (other,) = await h.runs(rule="warm")
    other_run = await h.store.get_run(other.id)
    assert other_run is not None
    assert other_run.steps[0].outcome == "ok", other_run.steps[0].message
    (value,) = held_by_other
    assert value is not None
    assert f"|{other.id}/" in _text(value)
    assert not await redis.exists(lock)

    # The endpoint comes back: the waiting run is admitted again and acts holding the lock.
    held_at_call: list[bytes | str | None] = []

    async def answer(request: web.Request) -> web.Response:
        held_at_call.append(await redis.get(lock))
        return web.Response(text="flushed")

    app = web.Application()
    app.router.add_post("/flush", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    bound.listen()
    await web.SockSite(runner, bound).start()
    try:
        await due_now(h)
        await h.drain()
    finally:
        await runner.cleanup()
    run = await h.store.get_run(waiting.id)
    assert run is not None
    assert run.steps[0].outcome == "ok", run.steps[0].message
    assert run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.VERIFYING), run.error
    (value,) = held_at_call  # called once
    assert value is not None
    assert f"|{waiting.id}/" in _text(value)
    assert await h.store.queue_depth() == 0
