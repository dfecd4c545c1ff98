"""A step that failed after its request may have reached its system counts as a possible change,
as an interrupted one does: its run's on_resolved steps are planned when the alert resolves, and
say that the change they undo may not have happened. A step that failed before its request left
(a refused connection), or was turned away (a 4xx answer), changed nothing: nothing is undone.

http.call against a real local HTTP server that disables a feature flag and enables it again,
on real PostgreSQL and Redis, the alert in through intake and resolved through it, as in
production.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from receiver.model import RunOutcome
from receiver.store import RunRecord
from remediations.base import Outcome
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from tests.support.peer import answering
from tests.support.pipeline import Harness, MakeHarness

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULE = """\
rules:
  - name: checkout-flag
    match: ['alertname="CheckoutErrors"']
    target: {kind: HttpEndpoint, name: flags}
    steps:
      - action: http.call
        params: {body: {flag: checkout, enabled: false}}
        approval: never
    on_resolved:
      - action: http.call
        params: {body: {flag: checkout, enabled: true}}
        approval: never
"""
LABELS = {"alertname": "CheckoutErrors", "service": "shop"}
# Two short tries: the step gives up within a second.
QUICK = HttpPolicy(timeout=0.3, attempts=2, initial_wait=0.01, max_wait=0.01, max_retry_after=1)


class Flags:
    """The flag service: records every POST. The requests to disable the flag are answered in
    turn from ``answers`` (the last repeated): a status, or None, taken and then never
    answered (until the test ends). One to enable it is answered 200."""

    def __init__(self, *answers: int | None) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []
        self.released = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.bodies.append(body)
        if body["enabled"]:
            return web.Response(text="{}")
        status = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if status is None:
            await self.released.wait()  # the request arrived; its answer never comes
            status = 200
        return web.Response(status=status, text="{}")

    def sent(self, enabled: bool) -> int:
        return sum(1 for b in self.bodies if b["enabled"] is enabled)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


async def harness(
    make_harness: MakeHarness, session: aiohttp.ClientSession, url: str, **settings: Any
) -> Harness:
    endpoints = HttpEndpoints({"flags": Endpoint("flags", url, {}, QUICK)}, session)
    return await make_harness(RULE, clients={"http": endpoints}, dry_run=False, **settings)


async def fire_then_resolve(h: Harness) -> tuple[RunRecord, RunRecord]:
    """The run after the alert fired, and after it resolved."""
    await h.deliver(LABELS)
    fired = await h.only_run()
    await h.deliver(LABELS, status="resolved")
    return fired, await h.only_run()


@pytest.mark.parametrize(
    ("answers", "ended"),
    [
        ((None,), "gave up after 2 attempts: timed out"),
        # The retry is refused (the endpoint took the first one, say): the first may have acted.
        ((None, 409), "refused the request: HTTP 409"),
    ],
    ids=["never answered", "timed out, then refused"],
)
async def test_a_call_sent_and_never_answered_may_have_acted_and_is_undone(
    make_harness: MakeHarness,
    session: aiohttp.ClientSession,
    answers: tuple[int | None, ...],
    ended: str,
) -> None:
    flags = Flags(*answers)
    async with answering(flags.handle) as base:
        try:
            h = await harness(make_harness, session, f"{base}/flags")
            fired, resolved = await fire_then_resolve(h)
        finally:
            flags.released.set()

    (step,) = fired.steps
    assert (step.outcome, step.may_have_acted) == (Outcome.FAILED, True)
    assert ended in step.message
    assert "it may have acted" in step.message
    assert "check HttpEndpoint/flags by hand" in step.message
    assert fired.outcome is RunOutcome.FAILED
    assert "may have acted; check the target by hand" in (fired.error or "")

    # The alert resolved: the flag is enabled again, and the record says why.
    assert flags.sent(enabled=False) == 2
    assert flags.sent(enabled=True) == 1
    assert resolved.resolved_at is not None
    (undo,) = [s for s in resolved.steps if s.phase == "resolve"]
    assert undo.outcome == Outcome.OK
    assert undo.message.startswith("endpoint 'flags' (127.0.0.1:")
    assert (
        "planned because run step 0 (http.call) failed after its request may have reached its "
        "system" in undo.message
    )
    assert "the change this step undoes may not have happened" in undo.message

    # The audit log says it too, on the failed step and on the undo.
    steps = [e["data"] for e in await h.store.audit_entries(fired.id) if e["kind"] == "step"]
    failed = [d for d in steps if d["phase"] == "run" and d["outcome"] == "failed"]
    assert [d.get("may_have_acted") for d in failed] == [True]
    assert [d["message"] for d in steps if d["phase"] == "resolve" and d["outcome"] == "ok"] == [
        undo.message
    ]


@pytest.mark.parametrize("way", ["connection refused", "answered 400"])
async def test_a_call_that_never_reached_or_was_turned_away_is_not_undone(
    make_harness: MakeHarness, session: aiohttp.ClientSession, way: str
) -> None:
    flags = Flags(400)
    async with answering(flags.handle) as base:
        # Nothing listens on port 9 (discard) of the loopback: every connect is refused.
        url = "http://127.0.0.1:9/flags" if way == "connection refused" else f"{base}/flags"
        # A step whose call never connected waits for its system (pipeline/unreachable.py,
        # tests/integration/test_unreachable_marked.py); 0 s gives up at once, so that what is
        # asked here, a failure that never reached, is what the step ends with.
        h = await harness(make_harness, session, url, unreachable_retry_s=0.0)
        fired, resolved = await fire_then_resolve(h)

    (step,) = fired.steps
    # A 4xx is a refusal of the request (remediations.http.post), a refused connection a failure.
    expected = Outcome.FAILED if way == "connection refused" else Outcome.REFUSED
    assert (step.outcome, step.may_have_acted) == (expected, False)
    assert "may have acted" not in step.message
    assert "may have acted" not in (fired.error or "")
    assert flags.sent(enabled=False) == (0 if way == "connection refused" else 1)

    # Nothing was changed, so nothing is undone: no on_resolved step, no POST to enable.
    assert resolved.resolved_at is not None
    assert [s for s in resolved.steps if s.phase == "resolve"] == []
    assert flags.sent(enabled=True) == 0
