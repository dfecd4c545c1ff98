"""The refusal digests' windows on a real Redis (``lua/digest.lua`` through ``DigestWindows``):
what is folded and counted, when a window closes, who gets its digest, and that every key
expires and shares the guards' hash tag (one slot on a real Redis Cluster)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio

from receiver.config import load_settings
from receiver.guards.digest_windows import DigestWindows
from receiver.guards.policy import GuardSettings, hash_tag
from receiver.guards.redis_guards import Guards
from receiver.model import NamespacePolicy
from receiver.redis_connect import connect_redis
from receiver.refusal_digest import Digest
from tests.support.redis_topologies import RedisCluster3

pytestmark = pytest.mark.redis

WINDOW_S = 300.0
LEASE_S = 120.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def windows_on(client: Any, clock: Clock, settings: GuardSettings | None = None) -> DigestWindows:
    return Guards(client, NamespacePolicy(), settings or GuardSettings(), clock=clock).digests


async def fold(
    windows: DigestWindows, run: str, guard: str = "rate", target: str = "Deployment/shop/a"
) -> bool:
    folding = await windows.fold(
        rule="restart",
        channel="oncall",
        run_id=run,
        guard=guard,
        target_key=target,
        window_s=WINDOW_S,
    )
    return folding.folded


async def test_the_first_refusal_opens_a_window_and_the_others_are_counted_once(
    redis_client: redis.asyncio.Redis,
) -> None:
    clock = Clock()
    windows = windows_on(redis_client, clock)
    assert not await fold(windows, "run-0")
    # The opener asked again (its event retried) is still to be sent on its own.
    assert not await fold(windows, "run-0")
    assert await fold(windows, "run-1", "rate", "Deployment/shop/a")
    assert await fold(windows, "run-1", "rate", "Deployment/shop/a")  # retried: counted once
    assert await fold(windows, "run-2", "cooldown", "Deployment/shop/b")
    assert await fold(windows, "run-3", "rate", "Deployment/shop/" + "x" * 1000)
    # Every key of an open window expires (a day after its end), the indexes too.
    keys = [key async for key in redis_client.scan_iter(match="remediator:digest:*")]
    assert len(keys) == 4  # open, targets, runs, due
    for key in keys:
        assert 0 < await redis_client.pttl(key) <= (WINDOW_S + 86400) * 1000

    clock.advance(WINDOW_S - 1)
    assert await windows.claim(LEASE_S) is None
    clock.advance(1)
    claimed = await windows.claim(LEASE_S)
    assert claimed is not None
    entry, digest = claimed
    assert digest is not None
    assert (digest.rule, digest.channel, digest.opener) == ("restart", "oncall", "run-0")
    assert digest.refused == 3
    assert dict(digest.by_guard) == {"rate": 2, "cooldown": 1}
    assert digest.targets == 3
    assert digest.examples[:2] == ("Deployment/shop/a", "Deployment/shop/b")
    assert len(digest.examples[2]) == 200  # an example is cut; the count is not
    assert digest.end - digest.start == timedelta(seconds=WINDOW_S)
    # Claimed: nobody else gets it during its lease; then anyone may take it again.
    assert await windows.claim(LEASE_S) is None
    clock.advance(LEASE_S)
    again = await windows.claim(LEASE_S)
    assert again is not None
    assert again[0] == entry
    assert await windows.done(entry)
    assert not await windows.done(entry)
    clock.advance(LEASE_S)
    assert await windows.claim(LEASE_S) is None
    assert [key async for key in redis_client.scan_iter(match="remediator:digest:*")] == []


async def test_a_window_that_folded_nothing_has_no_digest(
    redis_client: redis.asyncio.Redis,
) -> None:
    clock = Clock()
    windows = windows_on(redis_client, clock)
    assert not await fold(windows, "run-0")
    clock.advance(WINDOW_S)
    assert await windows.claim(LEASE_S) is None
    assert [key async for key in redis_client.scan_iter(match="remediator:digest:*")] == []
    # The next refusal opens a new window, sent on its own.
    assert not await fold(windows, "run-1")


async def test_a_refusal_after_the_window_ends_opens_the_next_and_leaves_the_digest_due(
    redis_client: redis.asyncio.Redis,
) -> None:
    """No sender closed the ended window yet: the refusal after it is the first of a new
    window (sent), and the ended window's digest is claimable at once, on its own."""
    clock = Clock()
    windows = windows_on(redis_client, clock)
    assert not await fold(windows, "run-0")
    assert await fold(windows, "run-1")
    clock.advance(WINDOW_S + 10)
    assert not await fold(windows, "run-2")
    assert await fold(windows, "run-3", "pause")
    claimed = await windows.claim(LEASE_S)
    assert claimed is not None
    entry, ended = claimed
    assert ended is not None
    assert (ended.opener, ended.refused, dict(ended.by_guard)) == ("run-0", 1, {"rate": 1})
    assert await windows.done(entry)
    clock.advance(WINDOW_S)
    claimed = await windows.claim(LEASE_S)
    assert claimed is not None
    second = claimed[1]
    assert second is not None
    assert (second.opener, second.refused, dict(second.by_guard)) == ("run-2", 1, {"pause": 1})


async def test_replicas_racing_for_ended_windows_each_get_different_ones(
    redis_client: redis.asyncio.Redis, redis_url: str
) -> None:
    clock = Clock()
    clients = [redis.asyncio.Redis.from_url(redis_url) for _ in range(3)]
    try:
        replicas = [windows_on(client, clock) for client in clients]
        for rule in range(20):
            for run in range(3):
                await replicas[run].fold(
                    rule=f"rule-{rule}",
                    channel="oncall",
                    run_id=f"{rule}-{run}",
                    guard="rate",
                    target_key="Deployment/shop/a",
                    window_s=WINDOW_S,
                )
        clock.advance(WINDOW_S)
        # Each replica claims one digest at a time, all three at once, until none is left.
        digests: list[Digest] = []
        while True:
            claimed = await asyncio.gather(*(r.claim(LEASE_S) for r in replicas))
            taken = [c for c in claimed if c is not None]
            if not taken:
                break
            digests += [d for _, d in taken if d is not None]
        assert sorted(d.rule for d in digests) == sorted(f"rule-{i}" for i in range(20))
        assert all(d.refused == 2 for d in digests)
    finally:
        for client in clients:
            await client.aclose()


async def test_the_windows_work_on_a_cluster_in_the_guards_slot(
    redis_cluster: RedisCluster3,
) -> None:
    settings = load_settings(
        None, {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": redis_cluster.url}
    )
    built = connect_redis(settings, redis_cluster.url)
    try:
        clock = Clock()
        guard_settings = replace(settings.guard_settings())
        windows = windows_on(built.client, clock, guard_settings)
        assert not await fold(windows, "run-0")
        assert await fold(windows, "run-1")
        written = set()
        for node in redis_cluster.nodes:
            with node.client() as client:
                written |= {key.decode() for key in client.scan_iter(count=1000)}
        assert {key.split(":")[1] for key in written} == {"digest"}
        assert {hash_tag(key) for key in written} == {"remediator"}
        clock.advance(WINDOW_S)
        claimed = await windows.claim(LEASE_S)
        assert claimed is not None
        entry, digest = claimed
        assert digest is not None
        assert digest.refused == 1
        assert await windows.done(entry)
    finally:
        await built.close()
