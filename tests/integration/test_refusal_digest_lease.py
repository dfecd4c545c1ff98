"""Refusal digests with several replicas and a slow channel: each digest is claimed just before
it is sent, so a replica that is still sending keeps what it sends, and another replica that
flushes meanwhile sends only the digests nobody holds: each goes to the channel once, audited
once (verify-stop27 C2: one claim of 32 digests under one lease let a second replica send the
unsent ones again, in lockstep).

Real PostgreSQL, Redis and a local HTTP server as the channel. Time on the guards' clock is the
channel's: each message takes ``SEND_S`` of it (the server moves the injected clock as it
answers), as a slow webhook would in the field; nothing waits on the wall clock.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.peer import answering
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

HOOK = "/hooks/oncall"
RULES = 6
# What one message takes on the guards' clock: five of them are past two minutes (the lease one
# claim of every due digest had), and two are well within the lease of one digest here
# (``digest_lease_s``: 10 + 2 x 10 + 30 + 15 + 15 = 90 s with this channel's policy).
SEND_S = 25.0
POLICY = HttpPolicy(timeout=10.0, attempts=2)


class Clock:
    def __init__(self) -> None:
        # Near the real time: the audit rows are stamped by PostgreSQL's clock.
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class SlowChannel:
    """A webhook whose every message takes ``SEND_S`` on ``clock``; on the ``during``-th it
    lets ``then`` run (another replica flushing) before it answers."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.titles: list[str] = []
        self.during = 0
        self.then: Harness | None = None
        self.then_handled: int | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.titles.append(str(body["title"]))
        self.clock.advance(SEND_S)
        if len(self.titles) == self.during and self.then is not None:
            self.then_handled = await self.then.pipeline.digests.flush()
        return web.Response(text="ok")


@pytest.fixture
async def channel_url() -> AsyncIterator[tuple[SlowChannel, str]]:
    clock = Clock()
    channel = SlowChannel(clock)
    async with answering(channel.handle) as base:
        yield channel, base + HOOK


async def audit_rows(h: Harness) -> list[dict[str, object]]:
    rows = await h.store._pool.fetch(
        "SELECT data FROM audit_log WHERE kind = 'announcements.digest' ORDER BY id"
    )
    return [json.loads(r["data"]) for r in rows]


async def test_a_replica_flushing_while_another_sends_slowly_sends_only_the_unclaimed_digests(
    make_harness: MakeHarness, channel_url: tuple[SlowChannel, str]
) -> None:
    channel, url = channel_url
    clock = channel.clock
    async with aiohttp.ClientSession() as session:
        channels = {"oncall": Channel("oncall", ChannelKind.WEBHOOK, url, POLICY)}
        notifier = Notifier(channels, session, external_url="https://r.example")
        first = await make_harness(RESTART_WEB, clients={"notify": notifier}, guard_clock=clock)
        second = await make_harness(RESTART_WEB, clients={"notify": notifier}, guard_clock=clock)
        assert first.pipeline.digests.lease_s > SEND_S * 2
        # Six rules' windows to one channel, each opened by one refusal and folding three.
        for rule in range(RULES):
            for run in range(4):
                await first.guards.digests.fold(
                    rule=f"rule-{rule}",
                    channel="oncall",
                    run_id=f"run-{rule}-{run}",
                    guard="rate",
                    target_key=f"Deployment/shop/web-{run}",
                    window_s=300,
                )
        clock.advance(301)
        # The first replica sends the six, one after another; while its fifth message is on
        # its way (five messages in: 125 s after the windows ended), the second flushes.
        channel.during, channel.then = 5, second
        handled = await first.pipeline.digests.flush()

        assert (handled, channel.then_handled) == (5, 1)
        sent = Counter(channel.titles)
        assert len(sent) == RULES
        assert set(sent.values()) == {1}, sent
        rows = await audit_rows(first)
        assert sorted(str(r["rule"]) for r in rows) == [f"rule-{i}" for i in range(RULES)]
        assert all(r["delivered"] is True and r["refused"] == 3 for r in rows)
        # Nothing left to send, by either.
        assert await first.pipeline.digests.flush() == 0
        clock.advance(3600)
        assert await second.pipeline.digests.flush() == 0
        assert len(channel.titles) == RULES
