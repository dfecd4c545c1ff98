"""Refusal digests (issue 27): in a storm, a rule's refusals reach its channel as one message
when the first is refused and one digest when the window ends, not one message each.

Real PostgreSQL, Redis, worker and a local HTTP server as the channel; the window's time is
the guards' injected clock (``Guards(clock=...)``), moved by the test, never waited for.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from receiver.model import RunOutcome
from receiver.store import RunRecord
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.payloads import alert, notification
from tests.support.peer import Peer, peer
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.polling import eventually

__all__ = ["peer"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

HOOK = "/hooks/oncall"
EXTERNAL = "https://remediator.example"

# One run an hour, and a cooldown per target: the storm's first run is admitted (dry-run),
# every other is refused, by the cooldown on its target or by the rate.
RULE = (
    RESTART_WEB
    + """    guards: {cooldown: 1h, max_runs: {count: 1, per: 1h}}
    notify: {channel: oncall}
"""
)

DEPLOYMENTS = 40
PER_DEPLOYMENT = 6  # 240 events


class Clock:
    """The guards' time, moved by the test."""

    def __init__(self) -> None:
        # Near the real time: the store's audit rows are stamped by PostgreSQL's own clock.
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def notifier(peer: Peer) -> AsyncIterator[Notifier]:
    policy = HttpPolicy(timeout=2.0, attempts=1, initial_wait=0.01, max_wait=0.02)
    async with aiohttp.ClientSession() as session:
        channels = {"oncall": Channel("oncall", ChannelKind.WEBHOOK, peer.url(HOOK), policy)}
        yield Notifier(channels, session, external_url=EXTERNAL)


def storm_alerts(prefix: str = "web") -> list[dict[str, Any]]:
    return [
        alert(
            {
                "alertname": "HighMemoryUsage",
                "namespace": "shop",
                "deployment": f"{prefix}-{d}",
                "pod": f"{prefix}-{d}-{p}",
            }
        )
        for d in range(DEPLOYMENTS)
        for p in range(PER_DEPLOYMENT)
    ]


async def post_storm(h: Harness, alerts: list[dict[str, Any]]) -> None:
    for start in range(0, len(alerts), 50):
        await h.intake.accept(notification(*alerts[start : start + 50]))


async def drained(h: Harness) -> None:
    """Every event and job processed by a real worker."""
    async with h.worker(concurrency=16, poll_interval_s=0.05):

        async def left() -> int:
            depth = await h.store.queue_depth()
            jobs = await h.store._pool.fetchval(
                "SELECT count(*) FROM jobs WHERE state IN ('pending', 'claimed')"
            )
            return int(depth) + int(jobs)

        await eventually(left, lambda n: n == 0, timeout_s=60)


def refusal_messages(peer: Peer) -> list[dict[str, Any]]:
    return [r.body for r in peer.seen(HOOK) if r.body["event"] == "run_refused"]


async def announced_rows(h: Harness, run: RunRecord) -> list[dict[str, Any]]:
    return [
        a["data"] for a in await h.store.audit_entries(run.id) if a["kind"] == "run.announced"
    ]


async def test_a_storm_of_refusals_sends_one_message_then_one_digest(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    clock = Clock()
    h = await make_harness(
        RULE, clients={"notify": notifier}, guard_clock=clock, lock_wait_s=0.05
    )
    await post_storm(h, storm_alerts())
    await drained(h)

    refused = await h.runs(outcome=RunOutcome.REFUSED)
    assert len(refused) == DEPLOYMENTS * PER_DEPLOYMENT - 1
    # The channel heard of the first refusal at once, and of none of the others yet.
    assert len(refusal_messages(peer)) == 1

    # Every refused run still says what became of its announcement: the first was sent, the
    # others were folded into the window it opened.
    rows = {run.id: await announced_rows(h, run) for run in refused}
    assert all(len(r) == 1 for r in rows.values()), rows
    sent = [run for run in refused if rows[run.id][0]["delivered"]]
    assert len(sent) == 1
    (opener,) = sent
    folded = [run for run in refused if run is not opener]
    windows = {rows[run.id][0]["digest"] for run in folded}
    assert len(windows) == 1
    for run in folded:
        (data,) = rows[run.id]
        assert data["event"] == "refused"
        assert data["delivered"] is False
        assert "folded into the refusal digest of restart-web to oncall" in data["detail"]
    assert counter(h, event="refused", delivered="folded") == len(folded)
    assert counter(h, event="refused", delivered="true") == 1

    # Nothing more before the window ends.
    clock.advance(299)
    assert await h.pipeline.digests.flush() == 0
    clock.advance(2)
    assert await h.pipeline.digests.flush() == 1
    assert await h.pipeline.digests.flush() == 0

    (digest,) = [r.body for r in peer.seen(HOOK) if r.body["event"] == "refused_digest"]
    expected = Counter(run.refusal_guard for run in folded)
    targets = {run.target.key for run in folded}
    assert f"{len(folded)} more runs of restart-web were refused" in digest["text"]
    for guard, count in expected.items():
        assert f"{guard} {count}" in digest["text"]
    assert f"{len(targets)} targets: Deployment/shop/web-" in digest["text"]
    assert digest["title"] == f"Remediation refused {len(folded)} more times: restart-web"
    assert digest["rule"] == "restart-web"
    runs = digest["links"]["runs"]
    assert runs.startswith(f"{EXTERNAL}/api/v1/runs?rule=restart-web&outcome=refused&since=")
    assert len(refusal_messages(peer)) == 1

    (audited,) = await digest_rows(h)
    assert audited["window"] in windows
    assert audited["refused"] == len(folded)
    assert audited["by_guard"] == dict(expected)
    assert audited["targets"] == len(targets)
    assert audited["opener"] == opener.id
    assert audited["delivered"] is True
    assert counter(h, event="refused_digest", delivered="true") == 1


def counter(h: Harness, **labels: str) -> float:
    value = h.metrics.registry.get_sample_value("remediator_announcements_total", labels)
    return value or 0.0


async def digest_rows(h: Harness) -> list[dict[str, Any]]:
    rows = await h.store._pool.fetch(
        "SELECT data FROM audit_log WHERE kind = 'announcements.digest' ORDER BY id"
    )
    return [json.loads(r["data"]) for r in rows]
