"""redis.requeue_dead_letters when the server declines the move without running it: a replica
refuses its writes (READONLY), a replica cut from its master serves nothing (MASTERDOWN), a
cluster whose slot is not served is down (CLUSTERDOWN). Before, each was recorded as "Redis
refused the move ...; some messages may have moved before it, count the keys", a possible
change (may_have_acted), which plans a run's on_resolved steps; nothing had moved.

A real redis-server (Debian's), put in that state between the counts and the move: the
action's clock is read there (RQ's "now"), and the test's clock changes the server's state
the second time it is read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from receiver.embedded.process import free_port
from remediations.base import (
    ActionContext,
    ActionError,
    ActionRefused,
    Clients,
    TransientActionError,
)
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues
from remediations.redis_queue.requeue import RequeueDeadLetters, RequeueParams
from remediations.targets import Target
from tests.support.polling import eventually_blocking
from tests.support.redis_topologies import PASSWORD, RedisNode, debian_binary

pytestmark = pytest.mark.redis

NOW = datetime(2026, 8, 1, 12, 0, 0, tzinfo=UTC)
# One hash tag: on a cluster, the script's keys are in one slot.
REPORTS = QueueSpec(Layout.RQ, "rq:queue:{r}", "rq:failed:{r}", job_key_prefix="rq:job:{r}")
TARGET = Target("RedisQueue", "", "jobs/reports")


def _node(tmp_path: Path, *extra: str) -> Iterator[RedisNode]:
    port = free_port()
    argv = [
        str(debian_binary("redis-server")),
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
        "--save", "", "--appendonly", "no", "--requirepass", PASSWORD, *extra,
    ]  # fmt: skip
    node = RedisNode("declining", port, tmp_path, argv, PASSWORD)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisNode]:
    yield from _node(tmp_path / "plain")


@pytest.fixture
def cluster_node(tmp_path: Path) -> Iterator[RedisNode]:
    """A one-node Redis Cluster serving every slot."""
    workdir = tmp_path / "cluster"
    # Its bus port given: the default, the port + 10000, does not exist past 55535.
    yield from _node(
        workdir,
        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
        *("--cluster-port", str(free_port())),
    )


def _to_replica(client: redis.Redis, stale: str) -> None:
    # The replica of a master that is not there (nothing listens on port 1): its link stays
    # down.
    client.config_set("replica-serve-stale-data", stale)
    client.replicaof("127.0.0.1", 1)


def _primary_again(client: redis.Redis) -> None:
    client.replicaof("NO", "ONE")


def _slot_dropped(client: redis.Redis) -> None:
    client.cluster("DELSLOTS", key_slot(b"{r}"))


def _served(client: redis.Redis) -> None:
    eventually_blocking(
        lambda: client.cluster("INFO").get("cluster_state") == "ok",
        what="the one-node cluster is ok",
    )


def _slot_back(client: redis.Redis) -> None:
    client.cluster("ADDSLOTS", key_slot(b"{r}"))
    _served(client)


Change = Callable[[redis.Redis], None]
# The state entered before the move, and left after it; what is raised, and says why.
STATES: dict[str, tuple[Change, Change, type[ActionError], str]] = {
    "READONLY": (
        lambda c: _to_replica(c, "yes"),
        _primary_again,
        ActionRefused,
        "read-only replica",
    ),
    "MASTERDOWN": (
        lambda c: _to_replica(c, "no"),
        _primary_again,
        TransientActionError,
        "MasterDownError",
    ),
    "CLUSTERDOWN": (_slot_dropped, _slot_back, TransientActionError, "ClusterDownError"),
}


@pytest.mark.parametrize("state", STATES, ids=STATES)
async def test_a_move_the_server_declines_is_not_a_possible_change(
    request: pytest.FixtureRequest, state: str
) -> None:
    enter, leave, raised, said = STATES[state]
    node: RedisNode = request.getfixturevalue(
        "cluster_node" if state == "CLUSTERDOWN" else "server"
    )
    sync = node.client()
    if state == "CLUSTERDOWN":
        sync.cluster("ADDSLOTSRANGE", 0, 16383)
        _served(sync)
    for i in range(3):
        sync.hset(f"rq:job:{{r}}{i}", mapping={"status": "failed", "origin": "{r}"})
        sync.zadd("rq:failed:{r}", {f"{i}": NOW.timestamp() + 3600})
    reads = 0

    def clock() -> datetime:
        # Read once for the counts, then for the move: the server changes before the move.
        nonlocal reads
        reads += 1
        if reads == 2:
            enter(sync)
        return NOW

    client = redis.asyncio.Redis(port=node.port, password=PASSWORD)
    queues = RedisQueues("jobs", client, {"reports": REPORTS})
    try:
        with pytest.raises(ActionError) as caught:
            await RequeueDeadLetters(clock=clock).run(
                ActionContext("run-1", False, Clients({"redis:jobs": queues})),
                TARGET,
                RequeueParams(max_messages=10),
            )
    finally:
        await queues.close()
    assert reads >= 2
    error = caught.value
    assert type(error) is raised, error.message
    assert error.may_have_acted is False, error.message
    assert "nothing moved" in error.message, error.message
    assert said in error.message, error.message
    # Nothing moved, indeed: once the server serves again, every failed job is still there.
    leave(sync)
    assert sync.zcard("rq:failed:{r}") == 3
    assert sync.llen("rq:queue:{r}") == 0
