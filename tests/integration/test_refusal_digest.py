"""Refusal digests: in a storm (issue 12), a rule's refusals reach its channel as one message
when the first is refused and one digest when the window ends, not one message each.

Real PostgreSQL, Redis, worker and a local HTTP server as the channel; the window's time is
the guards' injected clock (``Guards(clock=...)``), moved by the test, never waited for.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio
from structlog.testing import capture_logs

from receiver.audit_folds import unfold
from receiver.model import RunOutcome
from receiver.refusal_digest import digest_audit
from receiver.store import RunRecord
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.payloads import alert, notification, notification_body
from tests.support.peer import Peer, peer
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.polling import current, eventually
from tests.support.redis_fixtures import acl_user
from tests.support.served import ServeFactory

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


async def left(h: Harness) -> int:
    """Events and jobs not done yet."""
    depth = await h.store.queue_depth()
    jobs = await h.store._pool.fetchval(
        "SELECT count(*) FROM jobs WHERE state IN ('pending', 'claimed')"
    )
    return int(depth) + int(jobs)


async def drained(h: Harness) -> None:
    """Every event and job processed by a real worker."""
    async with h.worker(concurrency=16, poll_interval_s=0.05):
        await eventually(lambda: left(h), lambda n: n == 0)


def refusal_messages(peer: Peer) -> list[dict[str, Any]]:
    return [r.body for r in peer.seen(HOOK) if r.body["event"] == "run_refused"]


async def announced_rows(h: Harness, run: RunRecord) -> list[dict[str, Any]]:
    """The run's announcements: its ``run.announced`` rows, and the one a run stored refused
    holds in its ``run.created`` row (receiver/audit_folds.py)."""
    return [
        dict(data)
        for a in await h.store.audit_entries(run.id)
        for kind, data in unfold(a["kind"], a["data"])
        if kind == "run.announced"
    ]


async def test_a_storm_of_refusals_sends_one_message_then_one_digest(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    clock = Clock()
    h = await make_harness(RULE, clients={"notify": notifier}, guard_clock=clock, lock_wait_s=0.05)
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


async def test_two_replicas_fold_into_one_window_and_send_one_digest(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    """Two pipelines, each with its own guards and worker, sharing PostgreSQL and Redis (two
    replicas of the service): one refusal message, and one digest whichever flushes."""
    clock = Clock()
    replicas = [
        await make_harness(RULE, clients={"notify": notifier}, guard_clock=clock, lock_wait_s=0.05)
        for _ in range(2)
    ]
    first = replicas[0]
    await post_storm(first, storm_alerts())
    workers = [h.worker(concurrency=8, poll_interval_s=0.05) for h in replicas]
    async with workers[0], workers[1]:
        await eventually(lambda: left(first), lambda n: n == 0)
    assert all(w.processed > 0 for w in workers)  # both replicas refused runs
    refused = await first.runs(outcome=RunOutcome.REFUSED)
    assert len(refusal_messages(peer)) == 1
    folded = sum(counter(h, event="refused", delivered="folded") for h in replicas)
    assert folded == len(refused) - 1

    clock.advance(301)
    handled = await asyncio.gather(*(h.pipeline.digests.flush() for h in replicas))
    assert sorted(handled) == [0, 1]
    assert sum([await h.pipeline.digests.flush() for h in replicas]) == 0
    (digest,) = [r.body for r in peer.seen(HOOK) if r.body["event"] == "refused_digest"]
    assert f"{len(refused) - 1} more runs of restart-web were refused" in digest["text"]
    (audited,) = await digest_rows(first)
    assert audited["refused"] == len(refused) - 1


async def test_a_digest_whose_sender_died_after_claiming_it_is_sent_by_another(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    clock = Clock()
    first = await make_harness(RULE, clients={"notify": notifier}, guard_clock=clock)
    second = await make_harness(RULE, clients={"notify": notifier}, guard_clock=clock)
    await post_storm(first, storm_alerts()[:12])
    await first.drain()
    clock.advance(301)
    # The first replica claims the digest and dies before sending it: nothing is sent, and
    # the claim holds for its lease.
    lease = first.pipeline.digests.lease_s
    claimed = await first.guards.digests.claim(lease)
    assert claimed is not None
    assert claimed[1] is not None
    assert await second.pipeline.digests.flush() == 0
    clock.advance(lease - 1)
    assert await second.pipeline.digests.flush() == 0
    clock.advance(2)
    assert await second.pipeline.digests.flush() == 1
    assert len([r for r in peer.seen(HOOK) if r.body["event"] == "refused_digest"]) == 1
    (audited,) = await digest_rows(second)
    assert audited["window"] == claimed[1].id
    assert audited["refused"] == 10  # 12 events: one admitted, one refusal sent, ten folded


async def test_a_digest_audited_before_its_sender_died_is_not_sent_again(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    clock = Clock()
    h = await make_harness(RULE, clients={"notify": notifier}, guard_clock=clock)
    await post_storm(h, storm_alerts()[:4])
    await h.drain()
    clock.advance(301)
    lease = h.pipeline.digests.lease_s
    claimed = await h.guards.digests.claim(lease)
    assert claimed is not None
    entry, digest = claimed
    assert digest is not None
    # Sent and audited, then the sender died before Redis let the digest go.
    await h.store.append_audit(
        "announcements.digest", data=digest_audit(digest, delivered=True, detail="sent")
    )
    clock.advance(lease + 1)
    assert await h.pipeline.digests.flush() == 1
    assert [r for r in peer.seen(HOOK) if r.body["event"] == "refused_digest"] == []
    assert len(await digest_rows(h)) == 1
    assert await h.guards.digests.claim(lease) is None
    assert entry


async def test_with_folding_off_every_refusal_is_sent_as_before(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer, redis_client: redis.asyncio.Redis
) -> None:
    clock = Clock()
    h = await make_harness(
        RULE, clients={"notify": notifier}, guard_clock=clock, refusal_digest_s=0
    )
    await post_storm(h, storm_alerts()[:30])
    await h.drain()
    refused = await h.runs(outcome=RunOutcome.REFUSED)
    assert len(refused) == 29
    assert len(refusal_messages(peer)) == 29
    for run in refused:
        (data,) = await announced_rows(h, run)
        assert data["delivered"] is True
        assert "digest" not in data
    assert [key async for key in redis_client.scan_iter(match="remediator:digest:*")] == []
    clock.advance(3600)
    assert await h.pipeline.digests.flush() == 0


@pytest.fixture
async def digestless_redis(
    redis_url: str, redis_client: redis.asyncio.Redis
) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the same Redis whose user may use every guard key but no digest key: the
    server answers the digest's script NOPERM, a reply the guards take for "not now"."""
    async with acl_user(redis_client, redis_url, "nodigest", ["remediator:[^d]*"]) as client:
        yield client


async def test_refusals_are_sent_one_by_one_when_redis_cannot_fold_them(
    make_harness: MakeHarness,
    notifier: Notifier,
    peer: Peer,
    digestless_redis: redis.asyncio.Redis,
) -> None:
    h = await make_harness(
        RULE, clients={"notify": notifier}, redis_client_override=digestless_redis
    )
    # Captured as structlog hands them over: where they are rendered to depends on how an
    # earlier test configured logging (stdout alone, the file passed; in the suite, not).
    with capture_logs() as logs:
        await post_storm(h, storm_alerts()[:30])
        await h.drain()
    refused = await h.runs(outcome=RunOutcome.REFUSED)
    assert len(refused) == 29
    # A message too many rather than one lost: each refusal went out on its own.
    assert len(refusal_messages(peer)) == 29
    for run in refused:
        (data,) = await announced_rows(h, run)
        assert data["delivered"] is True
    assert counter(h, event="refused", delivered="folded") == 0
    # Said in the log, once (not once per refusal).
    unavailable = [e for e in logs if str(e["event"]).startswith("refusal digest unavailable")]
    assert len(unavailable) == 1
    assert "NoPermissionError" in unavailable[0]["error"]  # the server said NOPERM to the fold


async def test_serve_folds_refusals_and_sends_the_digest_itself(
    serve: ServeFactory, redis_url: str, peer: Peer, tmp_path: Path
) -> None:
    """``remediator serve`` as configured by an operator (a 1s window, the shipped rules: three
    runs an hour): the refusals after the first are folded, and its own background task sends
    the digest once the window has ended, with no one calling it."""
    hook = tmp_path / "oncall-url"
    hook.write_text(peer.url(HOOK))
    served = serve(
        {
            "REMEDIATOR_REDIS_URL": redis_url,
            "REMEDIATOR_NOTIFY_CHANNELS": json.dumps(
                {"oncall": {"kind": "webhook", "url_file": str(hook)}}
            ),
            "REMEDIATOR_EXTERNAL_URL": EXTERNAL,
            "REMEDIATOR_REFUSAL_DIGEST": "1s",
        }
    )
    alerts = [
        alert(
            {
                "alertname": "HighMemoryUsage",
                "namespace": "demo",
                "deployment": f"web-{i}",
                "severity": "warning",
            }
        )
        for i in range(8)
    ]
    auth = {"Authorization": f"Bearer {served.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{served.url}/api/v1/alerts", json=notification_body(*alerts), headers=auth
        ) as resp,
    ):
        assert await resp.json() == {"accepted": 8, "duplicates": 0}

    def digests() -> list[dict[str, Any]]:
        return [r.body for r in peer.seen(HOOK) if r.body["event"] == "refused_digest"]

    (digest,) = await eventually(current(digests), bool)
    # Three runs an hour: five refused by the rate, the first announced, four in the digest.
    assert len(refusal_messages(peer)) == 1
    assert "4 more runs of restart-on-high-memory were refused" in digest["text"]
    assert "rate 4." in digest["text"]
    assert digest["links"]["runs"].startswith(f"{EXTERNAL}/api/v1/runs?rule=restart-on-high")
