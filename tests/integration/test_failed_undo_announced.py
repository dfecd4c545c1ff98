"""An undo whose step fails is told to the rule's channel, as a refused one is
(test_undo_announced.py): http.call against a real local HTTP server that disables a feature
flag and fails to enable it again, the rule's ``notify`` channel on the same server, on real
PostgreSQL and Redis, the alert in through intake and resolved through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.peer import Peer, Reply, peer
from tests.support.pipeline import MakeHarness

__all__ = ["peer"]

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
    notify: {channel: oncall}
"""
LABELS = {"alertname": "CheckoutErrors", "service": "shop"}
FLAGS, HOOK = "/flags", "/hooks/oncall"
QUICK = HttpPolicy(timeout=2.0, attempts=2, initial_wait=0.01, max_wait=0.01, max_retry_after=1)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


async def test_an_undo_whose_step_fails_is_announced_once(
    make_harness: MakeHarness, session: aiohttp.ClientSession, peer: Peer
) -> None:
    # The flag is disabled; enabling it again meets a service that is down, on every try.
    peer.answer(FLAGS, Reply(200, "{}"), Reply(503, "flag service down"))
    endpoints = HttpEndpoints({"flags": Endpoint("flags", peer.url(FLAGS), {}, QUICK)}, session)
    notifier = Notifier(
        {"oncall": Channel("oncall", ChannelKind.WEBHOOK, peer.url(HOOK), QUICK)},
        session,
        external_url="https://remediator.example",
    )
    h = await make_harness(RULE, clients={"http": endpoints, "notify": notifier}, dry_run=False)
    await h.deliver(LABELS)
    await h.deliver(LABELS, status="resolved")
    await h.deliver(LABELS, status="resolved")  # sent again by Alertmanager: nothing new

    run = await h.only_run()
    (undo,) = [s for s in run.steps if s.phase == "resolve"]
    assert undo.outcome == "failed"
    assert [r.body["enabled"] for r in peer.seen(FLAGS)] == [False, True, True]  # two tries
    events = [r.body["event"] for r in peer.seen(HOOK)]
    assert events == ["run_started", "run_finished", "undo_failed"]
    (message,) = [r.body for r in peer.seen(HOOK) if r.body["event"] == "undo_failed"]
    assert (message["run_id"], message["outcome"]) == (run.id, "failed")
    assert message["title"] == "Remediation not undone: checkout-flag on HttpEndpoint/flags"
    assert "on_resolved step http.call (step 1 of the run) failed: " in message["text"]
    assert "HTTP 503" in message["text"]
    assert "Check HttpEndpoint/flags" in message["text"]
    # The message lists the undo's step with the run's, marked as the undo's.
    assert [(s["action"], s["outcome"]) for s in message["steps"]] == [
        ("http.call", "ok"),
        ("resolve: http.call", "failed"),
    ]
