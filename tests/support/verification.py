"""The rule, channel and harness of the tests of verification and run announcements.

``rules(verify, ...)`` is a one-step rule (``test.restart``, from tests/support/rules.py) with
the given ``verify`` that announces on ``oncall``; ``LADDER`` an on_failed escalation for it,
``BREAKER`` guard settings whose breaker opens at the first failure. ``notifier`` is a real
``Notifier`` whose channels are a real local HTTP server (the ``peer`` fixture): ``oncall`` at
``HOOK``, ``broken`` at ``BROKEN`` (it answers 500). ``harness`` makes the pipeline harness
with both; ``events`` reads what the channel received, ``run_of``/``drained`` a run, and
``counter`` a metric."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from receiver.guards.policy import GuardSettings
from receiver.store import RunRecord
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.peer import Peer, Reply
from tests.support.pipeline import Harness, MakeHarness
from tests.support.polling import eventually
from tests.support.rules import Restart

FAST = HttpPolicy(timeout=2.0, attempts=2, initial_wait=0.01, max_wait=0.02)
HOOK = "/hooks/oncall"
BROKEN = "/hooks/broken"
BREAKER = GuardSettings(breaker_failures=1, breaker_window_s=3600, breaker_open_for_s=3600)


TARGET = (
    'target: {kind: Deployment, namespace: "{{ labels.namespace }}", '
    'name: "{{ labels.deployment }}"}'
)


def rules(verify: str, *, on_failed: str = "", notify: str = "oncall", guards: str = "") -> str:
    """The rule ``restart``: ``test.restart`` with ``verify``, announced on ``notify``, then the
    rule text ``on_failed`` and ``guards`` (each indented as a rule's key, or empty)."""
    return f"""
rules:
  - name: restart
    match: ['alertname="HighMemoryUsage"']
    {TARGET}
    steps:
      - action: test.restart
    verify: {verify}
    notify: {{channel: {notify}}}
{on_failed}{guards}"""


LADDER = """    on_failed:
      - action: notify
        params: {channel: oncall, message: "{{ labels.alertname }}: restart did not help"}
      - action: test.restart
"""


def labels(name: str = "web") -> dict[str, str]:
    """Labels of a HighMemoryUsage alert on Deployment shop/``name``."""
    return {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": name}


@pytest.fixture
async def notifier(peer: Peer) -> AsyncIterator[Notifier]:
    peer.answer(BROKEN, Reply(status=500, body="down"))
    async with aiohttp.ClientSession() as session:
        channels = {
            "oncall": Channel("oncall", ChannelKind.WEBHOOK, peer.url(HOOK), FAST),
            "broken": Channel("broken", ChannelKind.WEBHOOK, peer.url(BROKEN), FAST),
        }
        yield Notifier(channels, session, external_url="https://remediator.example")


async def harness(
    make_harness: MakeHarness, notifier: Notifier, text: str, **options: Any
) -> Harness:
    """The harness running ``text`` for real (not dry-run), with ``test.restart`` and
    ``notifier`` as its ``notify`` client; ``options`` go to ``make_harness``."""
    return await make_harness(
        text,
        dry_run=False,
        extra_actions=[Restart()],
        clients={"notify": notifier},
        **options,
    )


def events(peer: Peer) -> list[tuple[str, str]]:
    """(event, outcome) of every announcement the channel received, in order."""
    return [(r.body["event"], r.body["outcome"]) for r in peer.seen(HOOK)]


async def run_of(h: Harness, **filters: Any) -> RunRecord:
    """The one run of ``h`` that ``filters`` select, with its steps."""
    (found,) = await h.runs(**filters)
    run = await h.store.get_run(found.id)
    assert run is not None
    return run


async def drained(h: Harness, accept: Any) -> RunRecord:
    """Drain (jobs come due as their time passes) until the one run satisfies ``accept``."""

    async def probe() -> RunRecord:
        await h.drain()
        return await h.only_run()

    run: RunRecord = await eventually(probe, accept)
    return run


def counter(h: Harness, name: str, **labels: str) -> float:
    """The value of metric ``name`` with ``labels`` (0 when it was never counted)."""
    value = h.metrics.registry.get_sample_value(name, labels)
    return value or 0.0
