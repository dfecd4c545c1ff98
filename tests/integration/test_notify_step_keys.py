"""A ``notify`` step's Idempotency-Key names its step: a receiver that deduplicates on it takes
two steps of a run that send the same text (a run step's and an on_resolved step's) both, and
drops only the same step sent again. A real local HTTP server as the webhook channel."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from remediations.base import ActionContext, AlertFacts, Clients, Outcome
from remediations.http.post import HttpPolicy
from remediations.notify.action import Notify, NotifyParams
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from remediations.targets import Target
from tests.support.peer import Peer, peer

__all__ = ["peer"]

HOOK = "/hooks/audit"
ALERT = AlertFacts(labels={"alertname": "HighErrorRate"}, status="firing")


@pytest.fixture
async def notifier(peer: Peer) -> AsyncIterator[Notifier]:
    policy = HttpPolicy(timeout=2.0, attempts=1)
    async with aiohttp.ClientSession() as session:
        channels = {"audit": Channel("audit", ChannelKind.WEBHOOK, peer.url(HOOK), policy)}
        yield Notifier(channels, session)


async def test_two_steps_sending_the_same_text_are_two_messages(
    peer: Peer, notifier: Notifier
) -> None:
    # Before: both keys were the body's digest, and the receiver dropped the on_resolved
    # step's message as a retry of the run step's.
    step = NotifyParams.model_validate(
        {"channel": "audit", "message": "{{ labels.alertname }}: see the run"}
    )
    base = ActionContext("run-42", False, Clients({"notify": notifier}), rule="r", alert=ALERT)
    for phase, index in (("run", 0), ("resolve", 0), ("run", 0)):
        at = dataclasses.replace(base, phase=phase, step=index)
        result = await Notify().run(at, Target("Deployment", "shop", "web"), step)
        assert result.outcome is Outcome.OK

    keys = [seen.headers["Idempotency-Key"] for seen in peer.seen(HOOK)]
    assert keys[1] != keys[0]
    assert keys[2] == keys[0]  # the same step sent again (taken up after a crash)
    assert keys[0].startswith("run-42.run.0-audit-")
    assert keys[1].startswith("run-42.resolve.0-audit-")
