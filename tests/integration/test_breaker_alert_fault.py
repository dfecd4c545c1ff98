"""A run one of whose steps cannot be rendered over its alert (65,536 characters and more,
here) is refused before its guards are asked (the ``template`` guard): it takes no slot of the
rule's rate limit, feeds no breaker, and none of its steps acts, not even one before the step
that cannot be rendered. So a few bad alerts never switch the rule off, or use up its runs, for
the good ones; a step that reached its system and failed still counts. http.call against a
real local HTTP server, on real PostgreSQL and Redis."""

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
# One run an hour: a bad alert that took it would leave none for the good one.
ONE_AN_HOUR = RULE.replace(
    "    steps:\n", "    guards: {max_runs: {count: 1, per: 1h}}\n    steps:\n"
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


async def test_alerts_whose_values_cannot_be_rendered_take_no_slot_and_open_no_breaker(
    make_harness: MakeHarness, peer: Peer, session: aiohttp.ClientSession
) -> None:
    h = await harness(make_harness, peer, session, rules=ONE_AN_HOUR)
    for n in ("1", "2", "3"):
        await fire(h, n, TOO_LONG)
    runs = await h.runs()
    assert [(r.outcome, r.refusal_guard) for r in runs] == [(RunOutcome.REFUSED, "template")] * 3
    for run in runs:
        assert "step 1 (http.call) cannot be rendered over this alert" in (run.refusal_reason or "")
        assert "renders more than 65536 characters" in (run.refusal_reason or "")
        record = await h.store.get_run(run.id)
        assert record is not None
        assert [s.outcome for s in record.steps] == ["not_run"]
    assert peer.seen("/flush") == []  # nothing was sent for them

    assert "flush-cache" not in (await h.guards.status())["breakers"]  # no failure counted

    # The rule's one run an hour is still there for a good alert.
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


async def test_a_run_whose_later_step_cannot_be_rendered_is_refused_before_its_first_acts(
    make_harness: MakeHarness, peer: Peer, session: aiohttp.ClientSession
) -> None:
    """The first step would act (it POSTs a fixed body), the second cannot be rendered: half a
    remediation is worse than none, so neither runs."""
    h = await harness(make_harness, peer, session, rules=TWO_STEPS)
    for n in ("1", "2"):
        await fire(h, n, TOO_LONG)
    assert peer.seen("/flush") == []
    runs = await h.runs()
    assert [(r.outcome, r.refusal_guard) for r in runs] == [(RunOutcome.REFUSED, "template")] * 2
    assert all("step 2 (http.call)" in (r.refusal_reason or "") for r in runs)
    await fire(h, "good", "disk full")
    assert (await newest(h)).outcome is RunOutcome.SUCCEEDED
    assert [s.body for s in peer.seen("/flush")] == [{"step": "warm"}, {"reason": "disk full"}]
