"""The metrics read at scrape time, against the real store and Redis: pending approvals and
the next expiry, open breakers and the pause, each component's readiness."""

from __future__ import annotations

import asyncio
import math

import redis.asyncio

from receiver.guards.policy import GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import NamespacePolicy
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.support.approvals import MakeApprovalEnv


async def test_pending_approvals_and_the_next_expiry(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env(ttl_s=1200.0)
    metrics = Metrics()
    metrics.track_approvals(env.harness.store.approval_backlog)
    value = metrics.registry.get_sample_value
    await metrics.refresh()
    assert value("remediator_approvals_pending") == 0.0
    assert value("remediator_approval_next_expiry_seconds") == math.inf
    await env.pending_run()
    await metrics.refresh()
    assert value("remediator_approvals_pending") == 1.0
    remaining = value("remediator_approval_next_expiry_seconds")
    assert remaining is not None
    assert 1100 < remaining <= 1200


async def test_breakers_and_the_pause_are_read_from_redis(
    redis_client: redis.asyncio.Redis,
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings(breaker_failures=2))
    metrics = Metrics()
    metrics.track_guards(guards.status)
    value = metrics.registry.get_sample_value
    await metrics.refresh()
    assert value("remediator_paused") == 0.0
    for _ in range(2):
        await guards.record_result("restart", success=False)
    await guards.record_result("scale", success=False)
    await guards.pause(None, "maintenance")
    await metrics.refresh()
    assert value("remediator_breaker_open", {"rule": "restart"}) == 1.0
    assert value("remediator_breaker_open", {"rule": "scale"}) == 0.0
    assert value("remediator_paused") == 1.0
    # The breaker's keys gone (it closed): its series goes back to 0, not left at 1.
    await redis_client.flushdb()
    await metrics.refresh()
    assert value("remediator_breaker_open", {"rule": "restart"}) == 0.0
    assert value("remediator_paused") == 0.0


async def test_a_component_that_does_not_answer_is_down(store: Store) -> None:
    # Redis where nothing listens, and a peer that takes the connection and never answers.
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    nobody = redis.asyncio.from_url("redis://127.0.0.1:1", socket_connect_timeout=5)
    mute = redis.asyncio.from_url(f"redis://127.0.0.1:{port}", socket_timeout=30)
    metrics = Metrics()
    metrics.track_components(
        [
            ("store", store.ping),
            ("redis", Guards(nobody, NamespacePolicy(), GuardSettings()).probe),
            ("kubernetes", Guards(mute, NamespacePolicy(), GuardSettings()).probe),
        ],
        timeout_s=0.5,
    )
    try:
        await metrics.refresh()
    finally:
        silent.close()
        await nobody.aclose()
        await mute.aclose()
    value = metrics.registry.get_sample_value
    assert value("remediator_component_up", {"component": "store"}) == 1.0
    assert value("remediator_component_up", {"component": "redis"}) == 0.0
    assert value("remediator_component_up", {"component": "kubernetes"}) == 0.0
