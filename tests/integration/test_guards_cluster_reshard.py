"""The guards while their slot moves to another master of a real three-master Redis Cluster
(Debian's redis-server; resharding as ``redis-cli --cluster reshard`` does it: CLUSTER SETSLOT
IMPORTING and MIGRATING, MIGRATE of the slot's keys, CLUSTER SETSLOT NODE).

While the slot's keys are split between the two masters an admission's keys are too, and the
cluster runs no script over them (TRYAGAIN, or ASK then TRYAGAIN): the guards fail closed and
say why, write nothing, and keep every lock. Once the slot has moved, the client follows MOVED
to the new master, which runs the scripts it never loaded, over the state that moved with them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from itertools import count

import pytest

from receiver.config import load_settings
from receiver.guards.policy import AdmissionRequest, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, Target
from receiver.redis_connect import connect_redis
from tests.support.redis_topologies import PASSWORD, RedisCluster3, RedisNode

pytestmark = pytest.mark.redis

_runs = count(1)
HELD, OTHER = Target("Deployment", "shop", "held"), Target("Deployment", "shop", "other")


def request(rule: str, target: Target) -> AdmissionRequest:
    return AdmissionRequest(f"run-{next(_runs)}", rule, target, True, GuardSpec(600, 100, 3600))


def _node_id(node: RedisNode) -> str:
    with node.client() as client:
        return str(client.execute_command("CLUSTER MYID").decode())


class SlotMove:
    """The guards' slot moving from master ``source`` to ``dest``, one step at a time."""

    def __init__(self, cluster: RedisCluster3, slot: int, source: RedisNode, dest: RedisNode):
        self.cluster, self.slot, self.source, self.dest = cluster, slot, source, dest

    def begin(self) -> None:
        with self.dest.client() as dest, self.source.client() as source:
            dest.execute_command("CLUSTER SETSLOT", self.slot, "IMPORTING", _node_id(self.source))
            source.execute_command("CLUSTER SETSLOT", self.slot, "MIGRATING", _node_id(self.dest))

    def migrate(self, share: float = 1.0) -> int:
        """MIGRATE that share of the keys still on the source; how many moved."""
        with self.source.client() as source:
            keys = source.execute_command("CLUSTER GETKEYSINSLOT", self.slot, 10_000)
            moved = keys[: max(1, int(len(keys) * share))] if keys else []
            if moved:
                source.execute_command(
                    "MIGRATE", "127.0.0.1", self.dest.port, "", 0, 5000,
                    "AUTH", PASSWORD, "KEYS", *moved,
                )  # fmt: skip
        return len(moved)

    def end(self) -> None:
        """The rest of the keys moved, and every master told the slot's new owner."""
        self.migrate()
        dest_id = _node_id(self.dest)
        for node in self.cluster.nodes:
            with node.client() as client:
                client.execute_command("CLUSTER SETSLOT", self.slot, "NODE", dest_id)


@pytest.fixture
async def guards(redis_cluster: RedisCluster3) -> AsyncIterator[Guards]:
    settings = load_settings(
        None, {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": redis_cluster.url}
    )
    built = connect_redis(settings, redis_cluster.url)
    try:
        yield Guards(
            built.client, NamespacePolicy(), replace(settings.guard_settings(), timeout_s=5.0)
        )
    finally:
        await built.close()


@pytest.fixture
def slot_move(redis_cluster: RedisCluster3, guards: Guards) -> Iterator[SlotMove]:
    """The move of the guards' slot to another master; moved back after the test, for the
    session's other cluster tests."""
    pause = guards.keys.pause()
    source = redis_cluster.owner_of(pause)
    dest = next(node for node in redis_cluster.nodes if node is not source)
    with source.client() as client:
        slot = int(client.execute_command("CLUSTER KEYSLOT", pause))
    move = SlotMove(redis_cluster, slot, source, dest)
    try:
        yield move
    finally:
        for node in (source, dest):
            with node.client() as client:
                client.execute_command("CLUSTER SETSLOT", slot, "STABLE")
        if redis_cluster.owner_of(pause) is not source:
            back = SlotMove(redis_cluster, slot, dest, source)
            back.begin()
            back.end()
        redis_cluster.wait_ok()


async def test_while_the_guards_slot_moves_they_fail_closed_and_keep_their_state(
    redis_cluster: RedisCluster3, guards: Guards, slot_move: SlotMove
) -> None:
    first = request("restart", HELD)
    held = await guards.admit(first)
    assert held.admitted
    assert held.fence == 1
    await guards.record_result("flaky", False)

    slot_move.begin()
    assert slot_move.migrate(0.5) >= 1
    # Half the keys on each master: nothing runs, and the reason says why.
    with pytest.raises(GuardUnavailable) as caught:
        await guards.admit(request("scale", OTHER))
    assert "slot is being migrated to another master" in str(caught.value), caught.value
    with pytest.raises(GuardUnavailable):
        await guards.release(first, held)

    slot_move.end()
    assert redis_cluster.owner_of(guards.keys.pause()) is slot_move.dest
    # The lock moved with the slot, and the admission refused meanwhile wrote nothing: its
    # target's first fence is still 1.
    blocked = await guards.admit(request("other-rule", HELD))
    assert blocked.refusal is not None
    assert blocked.refusal.guard == "lock"
    assert await guards.release(first, held)
    later = await guards.admit(request("scale", OTHER))
    assert later.admitted
    assert later.fence == 1
    assert (await guards.status())["breakers"]["flaky"]["failures"] == 1
    with slot_move.source.client() as client:
        assert client.execute_command("CLUSTER COUNTKEYSINSLOT", slot_move.slot) == 0
