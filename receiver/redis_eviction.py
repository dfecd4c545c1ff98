"""Whether the guards' Redis deletes their keys to make room: serve's start-up warning.

A Redis whose memory reaches ``maxmemory`` applies its ``maxmemory-policy``. ``noeviction``
(Redis's default) refuses writes (``OOM``), and the guards fail closed. Every other policy
deletes keys instead, and the guards' keys are among them: the ``allkeys-*`` policies take any
key, and the ``volatile-*`` ones (``volatile-lru`` is the default of the managed Redis services)
any key with a TTL, which every guard key has. A target lock, a pause, a cooldown or the
budget's window deleted so reads as none: the guards then admit what they had refused, a second
run on a locked target, runs during a pause, beyond the budget, and nothing says so. Read from
``INFO memory`` (which managed services allow where they refuse ``CONFIG GET``), on the master
of the guards' slot on a cluster. Source: redis.conf, "MEMORY MANAGEMENT".
"""

from __future__ import annotations

import asyncio

from redis.asyncio import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from receiver.redis_connect import GuardRedis

__all__ = ["eviction_warning"]

# The bound of the one INFO call: the start-up checks' socket timeout (redis_connect).
_TIMEOUT_S = 5.0


async def eviction_warning(built: GuardRedis, key: str) -> str | None:
    """What to fix when the Redis holding ``key`` (a guard key) may evict keys now: a
    ``maxmemory`` set and a ``maxmemory-policy`` other than ``noeviction``. None when it may
    not (no ``maxmemory``: Redis evicts nothing), or when Redis does not answer now (the guards
    fail closed and /readyz says so)."""
    client = built.client
    try:
        async with asyncio.timeout(_TIMEOUT_S):
            if isinstance(client, RedisCluster):
                await client.initialize()
                node = client.get_node_from_key(key)
                info = await client.info("memory", target_nodes=node)
            else:
                info = await client.info("memory")
    except (RedisError, RedisClusterException, OSError, TimeoutError):
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
