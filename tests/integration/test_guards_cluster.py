"""The guards on a real three-master Redis Cluster (Debian's redis-server), reached the way the
service reaches it: ``redis.mode: cluster`` and ``redis_url`` naming one node.

Every key of every admission shares the prefix's hash tag, so each script runs in one slot: the
tests prove it from the cluster itself (CLUSTER KEYSLOT, and which master holds the keys), show
what the cluster does with keys that do not share a slot, and stop the master of the guards'
slot to see them fail closed and come back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from itertools import count
from typing import Any

import pytest
import structlog
from redis.exceptions import RedisClusterException, ResponseError

from receiver.audit_outbox import AuditedSwitch
from receiver.config import load_settings
from receiver.guards.policy import (
    GUARDS,
    AdmissionRequest,
    GuardError,
    GuardKeys,
    GuardSettings,
    GuardUnavailable,
    admit_arguments,
    hash_tag,
)
from receiver.guards.redis_guards import Guards
from receiver.guards.scripts import load_lua
from receiver.model import GuardSpec, NamespacePolicy, Target
from receiver.redis_connect import GuardRedis, connect_redis, write_refusal
from receiver.redis_warnings import durability_warning
from tests.support.polling import eventually
from tests.support.redis_topologies import RedisCluster3

pytestmark = pytest.mark.redis

_runs = count(1)
TARGETS = [Target("Deployment", "shop", f"app-{i}") for i in range(12)]


def request(rule: str, target: Target, **spec: Any) -> AdmissionRequest:
    return AdmissionRequest(f"run-{next(_runs)}", rule, target, True, GuardSpec(**spec))


@pytest.fixture
async def cluster_redis(redis_cluster: RedisCluster3) -> AsyncIterator[tuple[GuardRedis, Any]]:
    settings = load_settings(
        None, {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": redis_cluster.url}
    )
    built = connect_redis(settings, redis_cluster.url)
    try:
        yield built, settings
    finally:
        await built.close()


def guards_on(cluster_redis: tuple[GuardRedis, Any], **settings: Any) -> Guards:
    built, configured = cluster_redis
    return Guards(built.client, NamespacePolicy(), replace(configured.guard_settings(), **settings))


def keys_by_master(cluster: RedisCluster3) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for node in cluster.nodes:
        with node.client() as client:
            out[node.port] = {key.decode() for key in client.scan_iter(count=1000)}
    return out


async def test_every_guard_works_on_the_cluster_with_all_keys_in_one_slot(
    redis_cluster: RedisCluster3, cluster_redis: tuple[GuardRedis, Any]
) -> None:
    guards = guards_on(cluster_redis, budget_count=8, breaker_failures=2)
    # Lock: a second run on a target waits for the first one's release.
    first = request("restart", TARGETS[0])
    held = await guards.admit(first)
    assert held.admitted
    assert held.fence == 1
    refused = await guards.admit(request("restart", TARGETS[0]))
    assert refused.refusal is not None
    assert refused.refusal.guard == "lock"
    assert await guards.release(first, held)
    # Cooldown per (rule, target), rate per rule, budget across rules and targets.
    cooled = request("scale", TARGETS[1], cooldown_s=600)
    assert (await guards.admit(cooled)).admitted
    again = await guards.admit(request("scale", TARGETS[1], cooldown_s=600))
    assert again.refusal is not None
    assert again.refusal.guard == "cooldown"
    rated = [
        await guards.admit(request("rated", t, max_runs=2, max_runs_per_s=3600))
        for t in TARGETS[2:5]
    ]
    assert [a.admitted for a in rated] == [True, True, False]
    assert rated[2].refusal is not None
    assert rated[2].refusal.guard == "rate"
    spent = [await guards.admit(request(f"rule-{i}", t)) for i, t in enumerate(TARGETS[5:10])]
    # 8 disruptive admissions so far (restart, scale, rated x2, then four of these).
    assert [a.admitted for a in spent] == [True, True, True, True, False]
    assert spent[4].refusal is not None
    assert spent[4].refusal.guard == "budget"
    # Breaker: two failures of a rule refuse it.
    await guards.record_result("flaky", False)
    assert await guards.record_result("flaky", False) is not None
    tripped = await guards.admit(replace(request("flaky", TARGETS[10]), disruptive=False))
    assert tripped.refusal is not None
    assert tripped.refusal.guard == "breaker"
    # Pause refuses everything, on any target; resume lifts it.
    await guards.pause(None, "maintenance")
    paused = await guards.admit(replace(request("other", TARGETS[11]), disruptive=False))
    assert paused.refusal is not None
    assert paused.refusal.guard == "pause"
    status = await guards.status()
    assert status["paused"]
    assert status["budget"]["used"] == 8
    assert status["breakers"]["flaky"]["open"]
    await guards.resume()
    assert (await guards.admit(replace(request("other", TARGETS[11]), disruptive=False))).admitted

    # Where the keys are: one slot, so one master, whatever the rule or target.
    by_master = keys_by_master(redis_cluster)
    written = set().union(*by_master.values())
    kinds = {key.split(":")[1] for key in written}
    assert kinds >= {"cooldown", "rate", "budget", "breaker", "lock", "fence"}
    assert {hash_tag(key) for key in written} == {"remediator"}
    with redis_cluster.nodes[0].client() as client:
        slots = {client.execute_command("CLUSTER KEYSLOT", key) for key in written}
    assert len(slots) == 1
    owner = redis_cluster.owner_of(next(iter(written)))
    assert by_master[owner.port] == written
    assert all(not keys for port, keys in by_master.items() if port != owner.port)


async def test_keys_without_one_tag_are_refused_by_the_cluster_client(
    redis_cluster: RedisCluster3, cluster_redis: tuple[GuardRedis, Any]
) -> None:
    """Why the tag: the untagged keys of a standalone Redis span the three masters' slots, and
    the cluster will not run the admission; the guards also refuse such a prefix up front."""
    built, _ = cluster_redis
    untagged = GuardSettings(key_prefix="remediator:")
    with pytest.raises(ValueError, match="no hash tag"):
        Guards(built.client, NamespacePolicy(), untagged)
    keys, argv = admit_arguments(
        GUARDS,
        request("restart", TARGETS[0], cooldown_s=60),
        policy=NamespacePolicy(),
        settings=untagged,
        lock_token="t",
    )
    with redis_cluster.nodes[0].client() as client:
        assert len({client.execute_command("CLUSTER KEYSLOT", key) for key in keys}) > 1
    # The servers' CROSSSLOT reply (or redis-py's own check, in versions that route by keys).
    with pytest.raises(
        (ResponseError, RedisClusterException), match=r"hash to the same slot|same key slot"
    ):
        await built.client.register_script(load_lua("admit"))(keys=keys, args=argv)


async def test_a_layout_bug_is_a_guard_error_not_an_outage(
    redis_cluster: RedisCluster3, cluster_redis: tuple[GuardRedis, Any]
) -> None:
    """Keys of one script in two slots fail for good, so the work fails (GuardError) rather
    than waiting for ever as it would for an outage (GuardUnavailable)."""
    guards = guards_on(cluster_redis)

    class SpreadKeys(GuardKeys):
        def failures(self, rule: str) -> str:
            return f"elsewhere:failures:{rule}"

    guards._keys = SpreadKeys(guards.keys.prefix)  # a layout bug, on purpose
    with pytest.raises(GuardError, match=r"same slot|span cluster slots"):
        await guards.record_result("restart", False)


async def test_fails_closed_while_the_guards_master_is_down_and_comes_back(
    redis_cluster: RedisCluster3, cluster_redis: tuple[GuardRedis, Any]
) -> None:
    guards = guards_on(cluster_redis, timeout_s=3.0)
    assert (await guards.admit(request("restart", TARGETS[0]))).admitted
    owner = redis_cluster.owner_of(guards.keys.pause())
    owner.stop()
    with pytest.raises(GuardUnavailable):
        await guards.admit(request("restart", TARGETS[1]))
    with pytest.raises(GuardUnavailable):
        await guards.status()
    # /readyz's probe asks that master, not any node of the cluster.
    for _ in range(5):
        with pytest.raises(GuardUnavailable):
            await guards.probe()
    owner.start()
    redis_cluster.wait_ok()

    async def admitted() -> bool:
        try:
            return (await guards.admit(request("restart", TARGETS[2]))).admitted
        except GuardUnavailable:
            return False

    await eventually(admitted, interval_s=0.2, what="guards back on the cluster")


async def test_the_guards_master_without_replicas_is_warned_about(
    redis_cluster: RedisCluster3, cluster_redis: tuple[GuardRedis, Any]
) -> None:
    """Asked of the master of the guards' slot itself, not of any node."""
    built, _ = cluster_redis
    key = guards_on(cluster_redis).keys.pause()
    warning = await durability_warning(built, key)
    assert warning is not None
    assert "min-replicas-to-write" in warning
    owner = redis_cluster.owner_of(key)
    others = [node for node in redis_cluster.nodes if node is not owner]
    for node in others:
        with node.client() as client:
            client.config_set("min-replicas-to-write", 1)
    try:
        assert await durability_warning(built, key) is not None
        with owner.client() as client:
            client.config_set("min-replicas-to-write", 1)
        try:
            assert await durability_warning(built, key) is None
        finally:
            with owner.client() as client:
                client.config_set("min-replicas-to-write", 0)
    finally:
        for node in others:
            with node.client() as client:
                client.config_set("min-replicas-to-write", 0)


async def test_the_guards_need_only_the_master_of_their_slot(
    redis_cluster: RedisCluster3, cluster_redis: tuple[GuardRedis, Any]
) -> None:
    """Another master down: admissions, the status (its scan for breakers included) and the
    readiness probe still answer, from the guards' master alone."""
    guards = guards_on(cluster_redis, timeout_s=3.0)
    await guards.record_result("flaky", False)
    owner = redis_cluster.owner_of(guards.keys.pause())
    other = next(node for node in redis_cluster.nodes if node is not owner)
    other.stop()
    assert (await guards.admit(request("restart", TARGETS[0]))).admitted
    status = await guards.status()
    assert status["breakers"]["flaky"]["failures"] == 1
    await guards.probe()


async def test_the_kill_switchs_audit_outbox_lives_in_the_guards_slot(
    redis_cluster: RedisCluster3, cluster_redis: tuple[GuardRedis, Any]
) -> None:
    """A pause and its audit record are written by one script: on a cluster the outbox shares
    the guards' slot, and is read and emptied there."""
    guards = guards_on(cluster_redis)
    switch = AuditedSwitch(guards, None, structlog.get_logger("test"))  # the store away
    paused = await switch.pause(None, "freeze", by="alice", via="api")
    resumed = await switch.resume(by="alice", via="api")
    assert (paused.audit_queued, resumed.audit_queued, resumed.switched.was_paused) == (
        True,
        True,
        True,
    )
    outbox = guards.keys.audit_outbox()
    assert hash_tag(outbox) == "remediator"
    assert redis_cluster.owner_of(outbox).port == redis_cluster.owner_of(guards.keys.pause()).port
    records, backlog = await switch.switch.due(min_age_s=0, limit=10)
    assert backlog.records == len(records)
    queued = [paused.switched.record.entry, resumed.switched.record.entry]
    assert [r.entry for r in records][-2:] == queued
    assert await switch.switch.remove([r.stream_id for r in records if r.stream_id]) == len(records)
    assert await switch.switch.depth() == 0


def _cluster_user(cluster: RedisCluster3, name: str, pattern: str) -> None:
    """``name`` on every node (ACLs are per node), every command on ``pattern`` only."""
    for node in cluster.nodes:
        with node.client() as client:
            client.acl_setuser(
                name, enabled=True, reset=True, passwords=[f"+{name}-pw"], keys=[pattern],
                commands=["+@all"],
            )  # fmt: skip


async def test_the_start_up_write_check_names_the_clusters_key_pattern(
    redis_cluster: RedisCluster3,
) -> None:
    """A cluster user limited to ~remediator:*, which the guards' tagged keys do not match:
    the start-up line names the pattern that does, ~{remediator}:* (it said ~remediator:*,
    what the user had), and with that pattern the write goes through."""
    port = redis_cluster.nodes[0].port
    url = f"redis://acluser:acluser-pw@127.0.0.1:{port}/0"
    settings = load_settings(
        None, {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": url}
    )
    answers = []
    try:
        for pattern in ("remediator:*", "{remediator}:*"):
            _cluster_user(redis_cluster, "acluser", pattern)
            built = connect_redis(settings, url)
            try:
                guards = Guards(built.client, NamespacePolicy(), settings.guard_settings())
                answers.append(await write_refusal(built, guards.probe, 5))
            finally:
                await built.close()
    finally:
        for node in redis_cluster.nodes:
            with node.client() as client:
                client.acl_deluser("acluser")
    refused, allowed = answers
    assert refused is not None
    assert "NoPermissionError: this user has no permissions to access one of the keys" in refused
    assert "allow the key prefix's pattern (~{remediator}:*)" in refused
    assert allowed is None


@pytest.mark.parametrize("credentials", [":not-the-password@", ""])
async def test_the_start_up_write_check_on_a_wrong_cluster_password_names_the_settings(
    redis_cluster: RedisCluster3, credentials: str
) -> None:
    """A cluster's node that does not take the password (or wants one that was not given):
    the line names the settings that give it, as with one server. redis-py's cluster client
    wraps the server's refusal in a RedisClusterException ("cannot be connected. Please provide
    at least one reachable node"), which named no setting and read as an unreachable cluster."""
    url = f"redis://{credentials}127.0.0.1:{redis_cluster.nodes[0].port}/0"
    settings = load_settings(
        None, {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": url}
    )
    built = connect_redis(settings, url)
    try:
        guards = Guards(built.client, NamespacePolicy(), settings.guard_settings())
        refusal = await write_refusal(built, guards.probe, 5)
    finally:
        await built.close()
    assert refusal is not None
    assert "not-the-password" not in refusal
    assert (
        "check the password (and user name, with an ACL user) in redis_url"
        " (REMEDIATOR_REDIS_URL), or redis.password" in refusal
    )
