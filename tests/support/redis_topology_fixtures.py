"""Fixtures of Redis Cluster and Sentinel (tests/support/redis_topologies): one cluster per
session, emptied for each test and made whole again if a test stopped a node; a fresh Sentinel
set for each test, since a failover changes which server is the master (``redis_sentinel_tls``:
one that speaks TLS only, and its certificates)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_tls import RedisTls, write_redis_pki
from tests.support.redis_topologies import RedisCluster3, SentinelSet


@pytest.fixture(scope="session")
def redis_cluster_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster3]:
    cluster = RedisCluster3.start(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster(redis_cluster_servers: RedisCluster3) -> RedisCluster3:
    redis_cluster_servers.restore()
    redis_cluster_servers.flush()
    return redis_cluster_servers


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[SentinelSet]:
    topology = SentinelSet.start(tmp_path / "sentinel-set")
    try:
        yield topology
    finally:
        topology.close()


@pytest.fixture
def redis_sentinel_tls(tmp_path: Path) -> Iterator[tuple[SentinelSet, RedisTls]]:
    tls = write_redis_pki(tmp_path / "redis-pki")
    topology = SentinelSet.start(tmp_path / "sentinel-set", tls)
    try:
        yield topology, tls
    finally:
        topology.close()
