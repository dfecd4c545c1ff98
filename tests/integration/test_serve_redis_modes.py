"""`remediator serve` with its guards on a Redis Cluster and behind Redis Sentinel, configured
as a user does (``REMEDIATOR_REDIS_MODE`` and friends): no embedded Redis is started, /readyz
asks the real servers, an alert's run passes the guards there, and the kill switch lands in the
cluster's guard slot or on the Sentinel's master; on a master that answers but refuses writes,
/readyz and ``remediator_component_up`` say the guards are down and the log says why; on a
replica named as the master, the start says so. PostgreSQL is the embedded default's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from receiver.guards.policy import CLUSTER_KEY_PREFIX
from tests.support.polling import eventually
from tests.support.redis import RedisServer, writes_need_a_replica
from tests.support.redis_topologies import (
    MASTER_NAME,
    PASSWORD,
    SENTINEL_PASSWORD,
    RedisCluster3,
    RedisNode,
    SentinelSet,
    data_node,
    debian_binary,
)
from tests.support.served import (
    SAMPLE,
    Served,
    ServeFactory,
    a_run_and_a_pause,
    env_for,
    runs_listed,
    serve_to_exit,
    stop,
)

pytestmark = pytest.mark.redis


async def test_serve_keeps_its_guards_on_a_redis_cluster(
    serve: ServeFactory, redis_cluster: RedisCluster3
) -> None:
    served = serve({"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": redis_cluster.url})
    banner = "".join(served.output)
    assert "external Redis (REMEDIATOR_REDIS_MODE=cluster)" in banner
    assert PASSWORD not in banner
    await a_run_and_a_pause(served)
    pause = f"{CLUSTER_KEY_PREFIX}pause"
    with redis_cluster.owner_of(pause).client() as owner:
        assert owner.hget(pause, "reason") == b"change freeze"
        # The run's admission wrote there too: its lock's fencing counter, in the same slot.
        assert any(key.startswith(b"{remediator}:fence:") for key in owner.scan_iter())
    assert stop(served) == 0


async def test_serve_keeps_its_guards_behind_redis_sentinel(
    serve: ServeFactory, redis_sentinel: SentinelSet
) -> None:
    served = serve(
        {
            "REMEDIATOR_REDIS_MODE": "sentinel",
            "REMEDIATOR_REDIS_SENTINELS": redis_sentinel.addresses,
            "REMEDIATOR_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REMEDIATOR_REDIS_PASSWORD": PASSWORD,
            "REMEDIATOR_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        }
    )
    banner = "".join(served.output)
    assert "external Redis (REMEDIATOR_REDIS_MODE=sentinel)" in banner
    # The test's master takes writes without its replica: the start-up says what to fix.
    assert "guard state may be lost in a redis failover" in banner
    assert PASSWORD not in banner
    assert SENTINEL_PASSWORD not in banner
    await a_run_and_a_pause(served)
    with redis_sentinel.master.client() as master:
        assert master.hget("remediator:pause", "reason") == b"change freeze"
    assert stop(served) == 0


async def _redis_ready(session: aiohttp.ClientSession, served: Served) -> tuple[int, str, str]:
    """/readyz's status and Redis's detail, and ``remediator_component_up`` of Redis."""
    async with session.get(f"{served.url}/readyz") as resp:
        status, detail = resp.status, (await resp.json())["components"]["redis"]["detail"]
    async with session.get(f"{served.url}/metrics") as resp:
        metrics = await resp.text()
    up = re.search(r'^remediator_component_up\{component="redis"\} (\S+)$', metrics, re.M)
    assert up is not None, metrics
    return status, detail, up.group(1)


def _logged(served: Served, event: str) -> list[dict[str, object]]:
    """The service's JSON log lines so far whose event starts with ``event``."""
    lines = [json.loads(line) for line in served.output if line.startswith("{")]
    return [line for line in lines if str(line.get("event", "")).startswith(event)]


async def _guards_down_lines(served: Served) -> list[dict[str, object]]:
    """The service's "guards unavailable" log lines so far."""
    return _logged(served, "guards unavailable")


# The start's line when the guards' Redis refuses the readiness check's write.
NO_WRITES = "guards' redis does not take writes"


async def test_serve_on_a_master_refusing_writes_is_not_ready_and_says_why(
    serve: ServeFactory, redis_controlled: RedisServer, redis_url: str
) -> None:
    """A master that answers PING but refuses writes (NOREPLICAS: ``min-replicas-to-write 1``,
    its only replica gone): /readyz was 200 and the log said ``server:ResponseError``. Now
    /readyz is 503 and ``remediator_component_up`` 0, both naming nothing but the server's
    refusal, a new alert's run stays pending, and its log line quotes the server."""
    served = serve({"REMEDIATOR_REDIS_URL": redis_url})
    assert _logged(served, NO_WRITES) == []  # it took writes at the start
    auth = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        assert (await _redis_ready(session, served))[::2] == (200, "1.0")
        with writes_need_a_replica(redis_url):
            status, detail, up = await _redis_ready(session, served)
            assert (status, up) == (503, "0.0")
            assert "NOREPLICAS Not enough good replicas to write" in detail
            async with session.post(
                f"{served.url}/api/v1/alerts", data=SAMPLE.read_bytes(), headers=auth
            ) as resp:
                assert await resp.json() == {"accepted": 1, "duplicates": 0}
            logged = await eventually(
                lambda: _guards_down_lines(served), what="the guards-down log line"
            )
            assert "NOREPLICAS Not enough good replicas to write" in str(logged[0]["error"])
            assert [run["outcome"] for run in await runs_listed(session, served)] == ["pending"]
        assert (await _redis_ready(session, served))[::2] == (200, "1.0")
    assert stop(served) == 0


@pytest.fixture
def redis_replica(tmp_path: Path) -> Iterator[RedisNode]:
    """A redis-server started ``--replicaof`` another (both real, Debian's): it answers PING
    and reads, and refuses every write with READONLY (``replica-read-only``, its default)."""
    server = debian_binary("redis-server")
    master = data_node(server, tmp_path / "master", "master")
    replica = data_node(
        server, tmp_path / "replica", "replica", "--replicaof", "127.0.0.1", str(master.port)
    )
    try:
        master.start()
        replica.start()
        yield replica
    finally:
        replica.stop()
        master.stop()


async def test_serve_on_a_replica_says_so_at_start_and_serves(
    serve: ServeFactory, redis_replica: RedisNode
) -> None:
    """A replica's URL where the master's goes: it answers PING, so the start said nothing and
    an SRE learnt it from failing admissions. Now the start warns once, quoting the server and
    naming the setting to point at the master; it still serves (the guards fail closed, and a
    Redis failing over may take writes again soon), /readyz saying the same refusal."""
    with redis_replica.client() as client:
        assert client.info("replication")["role"] == "slave"
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_replica.port}/0"
    served = serve({"REMEDIATOR_REDIS_URL": url})
    (warning,) = _logged(served, NO_WRITES)
    assert warning["level"] == "warning"
    problem = str(warning["problem"])
    assert f"(127.0.0.1:{redis_replica.port}) does not take a write" in problem
    assert "ReadOnlyError: You can't write against a read only replica;" in problem
    assert "redis_url (REMEDIATOR_REDIS_URL) names a replica: point it at the master" in problem
    assert PASSWORD not in "".join(served.output)
    async with aiohttp.ClientSession() as session:
        status, detail, up = await _redis_ready(session, served)
    assert (status, up) == (503, "0.0")
    assert "You can't write against a read only replica" in detail
    assert stop(served) == 0
    assert len(_logged(served, NO_WRITES)) == 1  # once, at the start


def test_serve_refuses_a_cluster_node_in_standalone_mode(
    embedded_dir: Path, redis_cluster: RedisCluster3
) -> None:
    """A cluster's URL with the default mode: /readyz would be 200 (PING answers) while every
    admission failed on keys spanning slots; the start says which setting to change. And
    nothing after it: the store it had connected is closed (its pool's upkeep had logged,
    with a traceback, a failure to reconnect to the embedded PostgreSQL stopping meanwhile),
    and no connection is left for the garbage collector (``unclosed``, Python's warnings
    shown)."""
    env = {"REMEDIATOR_REDIS_URL": redis_cluster.url, "PYTHONWARNINGS": "default"}
    result = serve_to_exit({**env_for(embedded_dir), **env})
    said = result.stdout + result.stderr
    assert result.returncode == 2, said
    assert "set redis.mode (REMEDIATOR_REDIS_MODE) to cluster" in result.stderr
    assert PASSWORD not in said
    assert "asyncpg.pool" not in said, said[-3000:]
    assert "unclosed" not in said, said[-3000:]


def test_serve_refuses_cluster_mode_on_one_server(embedded_dir: Path, redis_url: str) -> None:
    """The reverse: cluster mode on a server not in cluster mode would leave every run
    waiting for guards that never come (/readyz: "RedisClusterException")."""
    env = {"REMEDIATOR_REDIS_URL": redis_url, "REMEDIATOR_REDIS_MODE": "cluster"}
    result = serve_to_exit({**env_for(embedded_dir), **env})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not in cluster mode" in result.stderr
    assert "set redis.mode (REMEDIATOR_REDIS_MODE) to standalone" in result.stderr


def test_serve_refuses_a_sentinels_address_as_the_redis_url(
    embedded_dir: Path, redis_sentinel: SentinelSet
) -> None:
    """A sentinel's address where the master's goes: it answers PING, so /readyz would be 200,
    and refuses every script the guards send; the start says how to configure Sentinel."""
    url = f"redis://:{SENTINEL_PASSWORD}@{redis_sentinel.addresses}"
    result = serve_to_exit({**env_for(embedded_dir), "REMEDIATOR_REDIS_URL": url})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "names a Redis Sentinel" in result.stderr
    assert "set redis.mode (REMEDIATOR_REDIS_MODE) to sentinel" in result.stderr
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr
