"""A run's "started" announcement to a channel that does not answer holds up none of its steps:
the remediation goes on after a short wait, the message is still sent, and both announcements
reach the channel in order and are audited. Real PostgreSQL, Redis and local HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from receiver.model import RunOutcome
from receiver.store import RunRecord
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.payloads import alert, notification
from tests.support.peer import answering
from tests.support.pipeline import Harness, MakeHarness
from tests.support.polling import eventually
from tests.support.rules import Restart
from tests.support.verification import labels, rules

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# One attempt of the channel may take this long: far past the test's patience for the step.
CHANNEL_TIMEOUT_S = 20.0
# How soon the step must have run while the channel holds the announcement.
STEP_WITHIN_S = 5.0


class Holding:
    """A channel that holds each "run_started" message until ``release`` is set; it answers
    every other at once. ``events``: what came in, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        event = str((await request.json())["event"])
        self.events.append(event)
        if event == "run_started":
            await self.release.wait()
        return web.Response(text="ok")


@pytest.fixture
async def channel() -> AsyncIterator[tuple[Holding, Notifier]]:
    server = Holding()
    policy = HttpPolicy(timeout=CHANNEL_TIMEOUT_S, attempts=1)
    async with answering(server.handle) as base, aiohttp.ClientSession() as session:
        notifier = Notifier(
            {"oncall": Channel("oncall", ChannelKind.WEBHOOK, f"{base}/hook", policy)}, session
        )
        try:
            yield server, notifier
        finally:
            server.release.set()


async def stepped(h: Harness) -> RunRecord | None:
    """The run once its step (``test.restart``: a noop) has been recorded, else None."""
    for listed in await h.runs():
        run = await h.store.get_run(listed.id)
        if run is not None and run.steps and run.steps[0].outcome == "noop":
            return run
    return None


async def test_a_started_announcement_the_channel_holds_does_not_hold_the_steps(
    make_harness: MakeHarness, channel: tuple[Holding, Notifier]
) -> None:
    server, notifier = channel
    h = await make_harness(
        rules("{resolved_within: 10m}"),
        dry_run=False,
        extra_actions=[Restart()],
        clients={"notify": notifier},
    )
    await h.intake.accept(notification(alert(labels())))
    draining = asyncio.create_task(h.drain())
    try:
        # Before: the step waited for the channel's answer to "started" (its attempts, 5 s
        # each by default, and the waits between them; a Retry-After of up to 30 s each).
        await eventually(
            lambda: stepped(h),
            lambda run: run is not None,
            timeout_s=STEP_WITHIN_S,
            what="the step while the channel holds 'started'",
        )
        assert server.events == ["run_started"]  # sent before the step, its answer held
    finally:
        server.release.set()
        [drained] = await asyncio.gather(draining, return_exceptions=True)

    assert drained == 1  # the one event, processed without an error
    assert server.events == ["run_started", "run_finished"]
    run = await h.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    announced = [a for a in await h.store.audit_entries(run.id) if a["kind"] == "run.announced"]
    assert [(a["data"]["event"], a["data"]["delivered"]) for a in announced] == [
        ("started", True),
        ("finished", True),
    ]
