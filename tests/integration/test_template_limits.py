"""A notification whose template passes its bound when rendered with the alert's values: the
step says so (undelivered, like a channel that is down), nothing is sent, the run is not failed.
Against a local HTTP server standing in for the channel."""

from __future__ import annotations

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

ALERT = AlertFacts(
    labels={"alertname": "Flood", "namespace": "shop", "times": "100000000"},
    annotations={},
    status="firing",
    generator_url="",
)


@pytest.fixture
async def notifier(peer: Peer) -> AsyncIterator[Notifier]:
    async with aiohttp.ClientSession() as session:
        policy = HttpPolicy(timeout=2.0, attempts=1, initial_wait=0.01, max_wait=0.05)
        channels = {"audit": Channel("audit", ChannelKind.WEBHOOK, peer.url("/hook"), policy)}
        yield Notifier(channels, session)


async def test_a_message_too_large_to_render_is_undelivered_and_nothing_is_sent(
    peer: Peer, notifier: Notifier
) -> None:
    params = NotifyParams.model_validate(
        {"channel": "audit", "message": "{{ labels.alertname * (labels.times | int) }}"}
    )
    ctx = ActionContext("run-1", False, Clients({"notify": notifier}), rule="r", alert=ALERT)
    result = await Notify().run(ctx, Target("Deployment", "shop", "web"), params)
    assert result.outcome is Outcome.UNDELIVERED
    assert "5 x 100000000 is more than 65536 characters" in result.message
    assert peer.seen("/hook") == []
