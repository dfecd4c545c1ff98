"""The rule's circuit breaker counts failures of the remediation, not of an alert's values: a
step whose template cannot be rendered over its alert (65,536 characters and more, here) fails
its run without feeding the breaker, so a few bad alerts never switch the rule off for the good
ones; a step that reached its system and failed still counts. http.call against a real local
HTTP server, on real PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from receiver.guards.policy import GuardSettings
from receiver.model import RunOutcome
from receiver.store import RunRecord
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from tests.support.payloads import alert, notification
from tests.support.peer import Peer, Reply, peer
from tests.support.pipeline import Harness, MakeHarness

__all__ = ["peer"]

RULE = """\
rules:
  - name: flush-cache
    match: ['alertname="CacheStale"']
    target: {kind: HttpEndpoint, name: sink}
    steps:
      - action: http.call
        params: {body: {reason: "{{ annotations.summary }}"}}
        approval: never
"""
# A first step that changes something (it POSTs a fixed body) before the step whose template
# fails: once a step has acted, the failure counts whatever its cause.
TWO_STEPS = RULE.replace(
    "    steps:\n",
    "    steps:\n"
    "      - action: http.call\n"
    '        params: {body: {step: "warm"}}\n'
    "        approval: never\n",
)
FAST = HttpPolicy(timeout=2.0, attempts=1, initial_wait=0.01, max_wait=0.05, max_retry_after=1)
TOO_LONG = "z" * 70_000


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


async def harness(
    make_harness: MakeHarness,
    peer: Peer,
    session: aiohttp.ClientSession,
    *replies: Reply,
    rules: str = RULE,
) -> Harness:
    url = peer.answer("/flush", *(replies or (Reply(200),)))
    endpoints = HttpEndpoints({"sink": Endpoint("sink", url, {}, FAST)}, session)
    return await make_harness(
        rules,
        GuardSettings(breaker_failures=2),
        clients={"http": endpoints},
        dry_run=False,
    )


async def fire(h: Harness, n: str, summary: str) -> None:
    labels = {"alertname": "CacheStale", "service": "shop", "n": n}
    await h.intake.accept(notification(alert(labels, annotations={"summary": summary})))
    await h.drain()


async def newest(h: Harness) -> RunRecord:
    return max(await h.runs(), key=lambda r: r.created_at)


async def test_alerts_whose_values_cannot_be_rendered_do_not_open_the_breaker(
    make_harness: MakeHarness, peer: Peer, session: aiohttp.ClientSession
) -> None:
    h = await harness(make_harness, peer, session)
    for n in ("1", "2", "3"):
        await fire(h, n, TOO_LONG)
    runs = await h.runs()
    assert [r.outcome for r in runs] == [RunOutcome.FAILED] * 3
    for run in runs:
        record = await h.store.get_run(run.id)
        assert record is not None
        (step,) = record.steps
        assert "renders more than 65536 characters" in (step.message or "")
        assert run.error is not None
        assert "not counted in the rule's circuit breaker" in run.error
    assert peer.seen("/flush") == []  # nothing was sent for them

    assert "flush-cache" not in (await h.guards.status())["breakers"]  # no failure counted

    await fire(h, "good", "disk full")
    assert (await newest(h)).outcome is RunOutcome.SUCCEEDED
    assert [s.body for s in peer.seen("/flush")] == [{"reason": "disk full"}]


async def test_steps_that_reached_their_system_and_failed_still_open_it(
    make_harness: MakeHarness, peer: Peer, session: aiohttp.ClientSession
) -> None:
    h = await harness(make_harness, peer, session, Reply(500, "down"))
    for n in ("1", "2"):
        await fire(h, n, "disk full")
    assert [r.outcome for r in await h.runs()] == [RunOutcome.FAILED] * 2
    assert (await h.guards.status())["breakers"]["flush-cache"]["failures"] == 2
    await fire(h, "3", "disk full")
    refused = await newest(h)
    assert (refused.outcome, refused.refusal_guard) == (RunOutcome.REFUSED, "breaker")
    assert len(peer.seen("/flush")) == 2


async def test_a_run_whose_earlier_step_acted_feeds_it_whatever_failed_after(
    make_harness: MakeHarness, peer: Peer, session: aiohttp.ClientSession
) -> None:
    h = await harness(make_harness, peer, session, rules=TWO_STEPS)
    for n in ("1", "2"):
        await fire(h, n, TOO_LONG)
    assert [s.body for s in peer.seen("/flush")] == [{"step": "warm"}] * 2
    runs = await h.runs()
    assert [r.outcome for r in runs] == [RunOutcome.FAILED] * 2
    assert all(r.error == "a step failed; see the run's steps" for r in runs)
    await fire(h, "good", "disk full")
    refused = await newest(h)
    assert (refused.outcome, refused.refusal_guard) == (RunOutcome.REFUSED, "breaker")
