"""serve's start-up warnings about the guards' Redis, read from ``INFO`` of the server
holding their keys (on a cluster, the master of their slot; managed services allow ``INFO``
where they refuse ``CONFIG GET``).

``durability_warning``: a master that takes writes with no replica to have them
(``min-replicas-to-write`` 0): behind Sentinel or in a cluster, a failover then loses
admissions the guards answered.

``eviction_warning``: a Redis whose memory reaches ``maxmemory`` applies its
``maxmemory-policy``. ``noeviction`` (Redis's default) refuses writes (``OOM``), and the guards
fail closed. Every other policy deletes keys instead, and the guards' keys are among them: the
``allkeys-*`` policies take any key, and the ``volatile-*`` ones (``volatile-lru`` is the
default of the managed Redis services) any key with a TTL, which every guard key has. A target
lock, a pause, a cooldown or the budget's window deleted so reads as none: the guards then
admit what they had refused, a second run on a locked target, runs during a pause, beyond the
budget, and nothing says so. Source: redis.conf, "MEMORY MANAGEMENT".
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from receiver.config.redis_mode import RedisMode
from receiver.redis_connect import SOCKET, GuardRedis

__all__ = ["durability_warning", "eviction_warning", "guards_info"]


async def guards_info(built: GuardRedis, key: str, section: str) -> dict[str, Any] | None:
    """``INFO section`` of the server holding ``key`` (a guard key): on a cluster, the master
    of its slot. None when Redis does not answer within the start-up checks' socket timeout
    (the guards then fail closed, and /readyz says so)."""
    client = built.client
    try:
        async with asyncio.timeout(SOCKET["socket_timeout"]):
            if isinstance(client, RedisCluster):
                await client.initialize()
                node = client.get_node_from_key(key)
                info: dict[str, Any] = await client.info(section, target_nodes=node)
            else:
                info = await client.info(section)
    except (RedisError, RedisClusterException, OSError, TimeoutError):
        return None
    return info


async def durability_warning(built: GuardRedis, key: str) -> str | None:
    """What to fix when the master holding ``key`` (a guard key) takes writes with no replica
    to have them (``min-replicas-to-write`` 0): behind Sentinel or in a cluster, a failover then
    loses admissions the guards answered (README, "Redis Sentinel and Cluster"). None when it
    is set, with one server (no failover), or when Redis does not answer now (the guards fail
    closed and /readyz says so)."""
    if built.mode is RedisMode.STANDALONE:
        return None
    info = await guards_info(built, key, "replication")
    if info is None:
        return None
    # INFO lists min_slaves_good_slaves only while min-replicas-to-write is above 0.
    if "min_slaves_good_slaves" in info:
        return None
    return (
        f"the Redis master of the guards ({built.where}) takes writes without a replica"
        " (min-replicas-to-write 0): a failover can lose locks, cooldowns and budget entries"
        " it took; set min-replicas-to-write 1 on the master and its replicas"
    )


async def eviction_warning(built: GuardRedis, key: str) -> str | None:
    """What to fix when the Redis holding ``key`` (a guard key) may evict keys now: a
    ``maxmemory`` set and a ``maxmemory-policy`` other than ``noeviction``. None when it may
    not (no ``maxmemory``: Redis evicts nothing), or when Redis does not answer now (the guards
    fail closed and /readyz says so)."""
    info = await guards_info(built, key, "memory")
    if info is None:
        return None
    policy = str(info.get("maxmemory_policy", "noeviction"))
    limit = int(info.get("maxmemory", 0) or 0)
    if policy == "noeviction" or limit <= 0:
        return None
    return (
        f"the Redis of the guards ({built.where}) deletes keys when its memory is full"
        f" (maxmemory-policy {policy}, maxmemory {limit} bytes): target locks, the pause,"
        " cooldowns and budget entries among them (each has a TTL), and the guards then admit"
        " what they refused; set maxmemory-policy noeviction (a full Redis then refuses writes,"
        " and the guards fail closed)"
    )
