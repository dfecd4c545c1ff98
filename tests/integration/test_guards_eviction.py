"""A guards' Redis that deletes keys when its memory is full (a ``maxmemory`` and a
``maxmemory-policy`` other than ``noeviction``, as managed Redis services ship) is said at
start-up: the guards' keys all have TTLs, so even the ``volatile-*`` policies delete target
locks, pauses and budget entries, and the guards then admit what they refused. Real
redis-server processes (Debian's), one server and the guards' master of a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio

from receiver.assembly import redis_checks
from receiver.config import Settings, load_settings
from receiver.embedded.process import free_port
from receiver.guards.policy import AdmissionRequest, GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, Target
from receiver.redis_connect import connect_redis
from receiver.redis_warnings import eviction_warning
from tests.support.redis_topologies import PASSWORD, RedisCluster3, RedisNode, debian_binary
from tests.support.served import ServeFactory, stop

pytestmark = pytest.mark.redis

WEB = Target("Deployment", "shop", "web")


def _server(tmp_path: Path, *extra: str) -> RedisNode:
    port = free_port()
    argv = [
        str(debian_binary("redis-server")),
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)),
        *("--save", "", "--appendonly", "no", "--requirepass", PASSWORD),
        *extra,
    ]
    node = RedisNode("evicting", port, tmp_path, argv, PASSWORD)
    node.start()
    return node


async def test_a_redis_that_evicts_guard_keys_when_full_is_said_at_start_up(
    tmp_path: Path,
) -> None:
    node = _server(tmp_path, "--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru")
    url = f"redis://:{PASSWORD}@127.0.0.1:{node.port}/0"
    settings = Settings(allow_unauthenticated=True)
    built = connect_redis(settings, url)
    guards = Guards(built.client, NamespacePolicy(), GuardSettings())
    cache = redis.asyncio.Redis(port=node.port, password=PASSWORD)
    try:
        _, _, eviction, refusal = await redis_checks(built, guards, settings, url, describe=True)
        assert refusal is None  # it takes writes: nothing else would have said it
        assert eviction is not None
        assert "maxmemory-policy volatile-lru" in eviction
        assert "set maxmemory-policy noeviction" in eviction
        assert PASSWORD not in eviction

        # What it warns of: a target lock, deleted to make room for another program's keys
        # with a TTL, lets a second run onto the target while the first acts.
        first = AdmissionRequest("run-1", "restart", WEB, False, GuardSpec())
        assert (await guards.admit(first)).admitted
        lock = guards.keys.lock(WEB)
        for i in range(5000):  # 250 MB through 4 MB: Redis's LRU is sampled, not exact
            if not await cache.exists(lock):
                break
            await cache.set(f"cache:{i}", "x" * 50_000, ex=3600)
        assert not await cache.exists(lock)
        second = AdmissionRequest("run-2", "scale", WEB, False, GuardSpec())
        assert (await guards.admit(second)).admitted

        # noeviction: a full Redis refuses writes (OOM), and the guards fail closed.
        await cache.config_set("maxmemory-policy", "noeviction")
        assert await eviction_warning(built, guards.keys.pause()) is None
    finally:
        await cache.aclose()
        await built.close()
        node.stop()


async def test_on_a_cluster_the_master_of_the_guards_slot_is_asked(
    redis_cluster: RedisCluster3,
) -> None:
    settings = load_settings(
        None, {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": redis_cluster.url}
    )
    built = connect_redis(settings, redis_cluster.url)
    guards = Guards(built.client, NamespacePolicy(), settings.guard_settings())
    owner = redis_cluster.owner_of(guards.keys.pause())
    other = next(node for node in redis_cluster.nodes if node is not owner)
    try:
        for node in (owner, other):
            with node.client() as client:
                client.config_set("maxmemory", "1gb")
        # Another master that evicts holds no guard key: nothing to say.
        with other.client() as client:
            client.config_set("maxmemory-policy", "allkeys-lru")
        assert await eviction_warning(built, guards.keys.pause()) is None
        with owner.client() as client:
            client.config_set("maxmemory-policy", "allkeys-lru")
        warning = await eviction_warning(built, guards.keys.pause())
        assert warning is not None
        assert "maxmemory-policy allkeys-lru" in warning
    finally:
        for node in (owner, other):
            with node.client() as client:
                client.config_set("maxmemory-policy", "noeviction")
                client.config_set("maxmemory", "0")
        await built.close()


async def test_serve_says_so_in_its_start_up_lines(serve: ServeFactory, tmp_path: Path) -> None:
    node = _server(tmp_path, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    try:
        served = serve({"REMEDIATOR_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{node.port}/0"})
        banner = "".join(served.output)
        assert "guard state may be evicted by redis" in banner
        assert "maxmemory-policy allkeys-lru" in banner
        assert PASSWORD not in banner
        assert stop(served) == 0
    finally:
        node.stop()
