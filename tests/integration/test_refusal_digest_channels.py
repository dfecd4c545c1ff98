"""Refusal digests to two channels, one of which does not answer: the other's digest goes out
when it is due, not after the slow channel's send, and each channel gets one at a time. Real
PostgreSQL, Redis and local HTTP server; the windows' time is the guards' injected clock,
moved by the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from receiver.alertmanager import Notification
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.payloads import alert, notification
from tests.support.peer import answering
from tests.support.pipeline import MakeHarness
from tests.support.polling import current, eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """
rules:
  - name: restart-web
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: shop, name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
    guards: {cooldown: 1h}
    notify: {channel: oncall}
  - name: restart-api
    match: ['alertname="HighCpuUsage"']
    target: {kind: Deployment, namespace: shop, name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
    guards: {cooldown: 1h}
    notify: {channel: slow}
  - name: restart-db
    match: ['alertname="HighDiskUsage"']
    target: {kind: Deployment, namespace: shop, name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
    guards: {cooldown: 1h}
    notify: {channel: slow}
"""

# The slow channel's one attempt may take this long; the test wants the other digest well
# before it.
SLOW_TIMEOUT_S = 12.0


class Clock:
    """The guards' time, moved by the test."""

    def __init__(self) -> None:
        # Near the real time: the store's audit rows are stamped by PostgreSQL's own clock.
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Channels:
    """The two channels' server: what each received, and the slow one's digests held until
    ``release`` is set (its other messages are answered at once)."""

    def __init__(self) -> None:
        self.digests: dict[str, list[dict[str, object]]] = {"slow": [], "oncall": []}
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        channel = request.path.strip("/")
        if body["event"] == "refused_digest":
            self.digests[channel].append(body)
            if channel == "slow":
                await self.release.wait()
        return web.Response(text="ok")


@pytest.fixture
async def channels() -> AsyncIterator[tuple[Channels, Notifier]]:
    server = Channels()
    slow = HttpPolicy(timeout=SLOW_TIMEOUT_S, attempts=1)
    fast = HttpPolicy(timeout=2.0, attempts=1)
    async with answering(server.handle) as base, aiohttp.ClientSession() as session:
        notifier = Notifier(
            {
                "slow": Channel("slow", ChannelKind.WEBHOOK, f"{base}/slow", slow),
                "oncall": Channel("oncall", ChannelKind.WEBHOOK, f"{base}/oncall", fast),
            },
            session,
        )
        try:
            yield server, notifier
        finally:
            server.release.set()


def storm(alertname: str, deployment: str) -> Notification:
    """One admitted run and three refused by the cooldown: one refusal sent, two folded."""
    return notification(
        *(
            alert({"alertname": alertname, "deployment": deployment, "pod": f"{deployment}-{p}"})
            for p in range(4)
        )
    )


async def test_a_slow_channel_does_not_hold_another_channels_digest(
    make_harness: MakeHarness, channels: tuple[Channels, Notifier]
) -> None:
    server, notifier = channels
    clock = Clock()
    h = await make_harness(RULES, clients={"notify": notifier}, guard_clock=clock)
    # The slow channel's two windows end first, and a flush takes one of them; the on-call
    # channel's ends while that one is on its way.
    await h.intake.accept(storm("HighCpuUsage", "api"))
    await h.intake.accept(storm("HighDiskUsage", "db"))
    await h.drain()
    clock.advance(100)
    await h.intake.accept(storm("HighMemoryUsage", "web"))
    await h.drain()
    clock.advance(201)
    flushing = asyncio.create_task(h.pipeline.digests.flush())
    try:
        await eventually(current(lambda: server.digests["slow"]), what="the slow channel's first")
        clock.advance(100)
        # Before: one digest at a time, the on-call channel's after the slow one's send.
        await eventually(
            current(lambda: server.digests["oncall"]),
            timeout_s=SLOW_TIMEOUT_S / 2,
            what="the on-call channel's digest while the slow channel holds its own",
        )
        # One digest at a time to a channel: the slow one's second waits for its first (a
        # burst to one Slack channel is answered 429).
        assert len(server.digests["slow"]) == 1
        assert not flushing.done()
    finally:
        server.release.set()
        [handled] = await asyncio.gather(flushing, return_exceptions=True)
    assert handled == 3
    assert sorted(str(d["rule"]) for d in server.digests["slow"]) == ["restart-api", "restart-db"]
    assert "2 more runs of restart-web were refused" in str(server.digests["oncall"][0]["text"])
