"""The guards behind Redis Sentinel (Debian's redis-server: a master, a replica, a sentinel),
reached the way the service reaches them: ``redis.mode: sentinel``, the sentinels' addresses,
the master's name, and passwords for the servers and for the sentinel.

A failover, forced or after the master dies, moves the guards to the promoted replica with the
state it had replicated (a cooldown, a lock still refuse); while no master answers, the guards
fail closed (GuardUnavailable: nothing runs) and come back by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from itertools import count

import pytest

from receiver.config import load_settings
from receiver.guards.policy import Admission, AdmissionRequest, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, Target
from receiver.redis_connect import GuardRedis, connect_redis, mode_mismatch, write_refusal
from receiver.redis_warnings import durability_warning
from tests.support.polling import eventually, eventually_blocking
from tests.support.redis_topologies import MASTER_NAME, PASSWORD, SENTINEL_PASSWORD, SentinelSet

pytestmark = pytest.mark.redis

_runs = count(1)
POD = Target("Deployment", "shop", "checkout")
OTHER = Target("Deployment", "shop", "cart")


def request(target: Target, *, disruptive: bool = True) -> AdmissionRequest:
    return AdmissionRequest(f"run-{next(_runs)}", "restart", target, disruptive, GuardSpec(600))


@pytest.fixture
async def sentinel_redis(redis_sentinel: SentinelSet) -> AsyncIterator[GuardRedis]:
    settings = load_settings(
        None,
        {
            "REMEDIATOR_REDIS_MODE": "sentinel",
            "REMEDIATOR_REDIS_SENTINELS": redis_sentinel.addresses,
            "REMEDIATOR_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REMEDIATOR_REDIS_PASSWORD": PASSWORD,
            "REMEDIATOR_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        },
    )
    built = connect_redis(settings, None)
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
def guards(sentinel_redis: GuardRedis) -> Guards:
    return Guards(sentinel_redis.client, NamespacePolicy())


async def admit_when_answered(guards: Guards, req: AdmissionRequest) -> Admission | None:
    """The admission, or None while the guards are unavailable (no master, or a demoted one)."""
    try:
        return await guards.admit(req)
    except GuardUnavailable:
        return None


def replicated(topology: SentinelSet) -> None:
    """Until the replica has every write the master took (WAIT), so a failover keeps them."""
    with topology.node_at(topology.master_port()).client() as client:
        assert client.execute_command("WAIT", 1, 5000) == 1


async def test_the_guards_follow_a_sentinel_failover_and_lose_no_admission(
    redis_sentinel: SentinelSet, guards: Guards
) -> None:
    """Every admission the guards answer once the sentinel has named the new master is kept by
    it: with ``min-replicas-to-write 1`` (README) the old master, cut off from the replica being
    promoted, answers NOREPLICAS instead of taking a write the failover would lose, and the
    guards fail closed on it until the old master is demoted and they reach the new one."""
    redis_sentinel.require_a_replica_for_writes()
    first = await guards.admit(request(POD))
    assert first.admitted
    replicated(redis_sentinel)

    old = redis_sentinel.start_failover()
    after_switch: list[Target] = []
    deadline = time.monotonic() + 60
    unavailable = 0
    for i in count():
        switched = redis_sentinel.master_port() != old.port
        target = Target("Deployment", "shop", f"app-{i}")
        answer = await admit_when_answered(guards, request(target, disruptive=False))
        if answer is None:
            unavailable += 1
        else:
            assert answer.admitted, answer.refusal
            if switched:
                after_switch.append(target)
                if redis_sentinel.replaced(old):
                    break
        assert time.monotonic() < deadline, "the failover did not settle within 60 s"
        await asyncio.sleep(0.02)  # the polling interval: admissions all through the switch
    assert redis_sentinel.master_port() == redis_sentinel.replica.port
    # The promoted replica holds every admission answered after the switch (without
    # min-replicas-to-write, the old master takes and loses some), and the first run's
    # cooldown, replicated before the failover.
    with redis_sentinel.replica.client() as promoted:
        assert [t for t in after_switch if not promoted.exists(guards.keys.lock(t))] == []
    assert unavailable > 0  # the switch was seen, and refused rather than admitted
    # The promoted master takes writes once the demoted one has synced with it and counts as a
    # good replica (min-replicas-to-write); until then it answers NOREPLICAS, and the guards
    # fail closed, as the loop saw.
    await asyncio.to_thread(
        eventually_blocking,
        redis_sentinel.master_has_a_good_replica,
        timeout_s=60,
        what="the promoted master counts the demoted one as a good replica",
    )
    again = await guards.admit(request(POD))
    assert again.refusal is not None
    assert again.refusal.guard == "cooldown"
    with redis_sentinel.master.client() as demoted:
        assert demoted.info("replication")["role"] == "slave"


async def test_the_guards_fail_closed_while_no_master_answers_and_recover(
    redis_sentinel: SentinelSet, guards: Guards
) -> None:
    assert (await guards.admit(request(POD))).admitted
    replicated(redis_sentinel)

    redis_sentinel.master.kill()
    # The sentinel still names the dead master until it is sure it is down: nothing is admitted.
    with pytest.raises(GuardUnavailable):
        await guards.admit(request(OTHER))
    with pytest.raises(GuardUnavailable):
        await guards.probe()

    # Once the sentinel promotes the replica, the guards answer again, with the state it had.
    refused = await eventually(
        lambda: admit_when_answered(guards, request(POD)),
        lambda a: a is not None,
        interval_s=0.2,
        what="guards answered by the promoted replica",
    )
    assert refused is not None
    assert refused.refusal is not None
    assert refused.refusal.guard == "cooldown"
    assert redis_sentinel.master_port() == redis_sentinel.replica.port
    assert (await guards.admit(request(OTHER))).admitted


async def test_a_master_that_writes_without_a_replica_is_warned_about(
    redis_sentinel: SentinelSet, sentinel_redis: GuardRedis, guards: Guards
) -> None:
    warning = await durability_warning(sentinel_redis, guards.keys.pause())
    assert warning is not None
    assert "min-replicas-to-write" in warning
    assert MASTER_NAME in warning
    redis_sentinel.require_a_replica_for_writes()
    assert await durability_warning(sentinel_redis, guards.keys.pause()) is None


async def test_sentinel_settings_the_sentinels_refuse_say_what_to_fix(
    redis_sentinel: SentinelSet,
) -> None:
    """Not a sentinel's address, a master name the sentinels do not monitor, their password
    missing: redis-py says "MasterNotFoundError" for each, and /readyz with it; the start-up
    check asks the sentinels and names the setting to change."""
    right = {
        "REMEDIATOR_REDIS_MODE": "sentinel",
        "REMEDIATOR_REDIS_SENTINELS": redis_sentinel.addresses,
        "REMEDIATOR_REDIS_SENTINEL_MASTER": MASTER_NAME,
        "REMEDIATOR_REDIS_PASSWORD": PASSWORD,
        "REMEDIATOR_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
    }
    master_node = f"127.0.0.1:{redis_sentinel.master.port}"
    cases = [
        ({}, None),
        # Named as both the YAML key and the variable: by now the service does not know which
        # one the user wrote (it named the variable to a user of the YAML file).
        (
            {"REMEDIATOR_REDIS_SENTINEL_MASTER": "cache"},
            "monitors no master named 'cache': set redis.sentinel.master"
            " (REMEDIATOR_REDIS_SENTINEL_MASTER) to the name",
        ),
        (
            {"REMEDIATOR_REDIS_SENTINEL_PASSWORD": ""},
            "does not take redis.sentinel.password (REMEDIATOR_REDIS_SENTINEL_PASSWORD)",
        ),
        ({"REMEDIATOR_REDIS_SENTINELS": master_node}, "or it is no sentinel"),
        # One wrong address beside a sentinel that names the master: the guards work.
        ({"REMEDIATOR_REDIS_SENTINELS": f"{master_node},{redis_sentinel.addresses}"}, None),
    ]
    for change, says in cases:
        settings = load_settings(None, {**right, **change})
        built = connect_redis(settings, None)
        try:
            problem = await mode_mismatch(built, settings, None)
        finally:
            await built.close()
        if says is None:
            assert problem is None, (change, problem)
        else:
            assert problem is not None, change
            assert says in problem, (change, problem)
            assert SENTINEL_PASSWORD not in problem
            assert PASSWORD not in problem


async def test_a_wrong_password_is_told_after_one_connection_not_ten(
    redis_sentinel: SentinelSet,
) -> None:
    """The start-up check asks each address once. redis-py's clients retry a connection error,
    an authentication failure among them, ten times with backoff: the check took seconds to say
    "wrong password", and on a busy machine overran its own time limit and said nothing."""
    node = redis_sentinel.master
    settings = load_settings(
        None,
        {
            "REMEDIATOR_REDIS_MODE": "sentinel",
            # A Redis server, not a sentinel: it refuses the sentinel password.
            "REMEDIATOR_REDIS_SENTINELS": f"127.0.0.1:{node.port}",
            "REMEDIATOR_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REMEDIATOR_REDIS_PASSWORD": PASSWORD,
            "REMEDIATOR_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        },
    )
    with node.client() as watcher:

        def connections() -> int:
            return int(watcher.info("stats")["total_connections_received"])

        before = connections()
        built = connect_redis(settings, None)
        try:
            problem = await mode_mismatch(built, settings, None)
        finally:
            await built.close()
        assert problem is not None
        assert "REMEDIATOR_REDIS_SENTINEL_PASSWORD" in problem
        assert connections() - before == 1


async def test_the_start_up_write_check_on_a_wrong_master_password_names_the_setting(
    redis_sentinel: SentinelSet,
) -> None:
    """The sentinel answers, the master refuses the password: the start-up line names
    redis.password, the master's (not the sentinels' own), and no password."""
    settings = load_settings(
        None,
        {
            "REMEDIATOR_REDIS_MODE": "sentinel",
            "REMEDIATOR_REDIS_SENTINELS": redis_sentinel.addresses,
            "REMEDIATOR_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REMEDIATOR_REDIS_PASSWORD": "not-the-password",
            "REMEDIATOR_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        },
    )
    built = connect_redis(settings, None)
    try:
        refusal = await write_refusal(built, Guards(built.client, NamespacePolicy()).probe, 5)
    finally:
        await built.close()
    assert refusal is not None
    assert "does not take a write: AuthenticationError:" in refusal
    assert (
        "check redis.password (REMEDIATOR_REDIS_PASSWORD), the password of the master and its"
        " replicas (the sentinels' own is redis.sentinel.password"
    ) in refusal
    assert "not-the-password" not in refusal
    assert SENTINEL_PASSWORD not in refusal


async def test_no_sentinel_answering_is_said_with_each_sentinels_address_and_error(
    redis_sentinel: SentinelSet,
) -> None:
    """Every sentinel down: redis-py's MasterNotFoundError quotes each sentinel's client by its
    repr (some 1,200 characters), and the line, cut at 300, said "No master found for 'guards'
    : <redis.asyncio.client.Redis(<redis.asyncio.connection.ConnectionPool(..." and never why.
    Now each sentinel is named by its address, with what it answered, and the settings to
    check; so does every admission's log line (``said``)."""
    down = f"127.0.0.1:{redis_sentinel.sentinel.port}"
    redis_sentinel.sentinel.kill()
    settings = load_settings(
        None,
        {
            "REMEDIATOR_REDIS_MODE": "sentinel",
            "REMEDIATOR_REDIS_SENTINELS": f"{down}, 127.0.0.1:1",
            "REMEDIATOR_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REMEDIATOR_REDIS_PASSWORD": PASSWORD,
            "REMEDIATOR_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        },
    )
    built = connect_redis(settings, None)
    guards = Guards(built.client, NamespacePolicy())
    try:
        refusal = await write_refusal(built, guards.probe, 5)
        with pytest.raises(GuardUnavailable) as unavailable:
            await guards.admit(request(POD))
    finally:
        await built.close()
    assert refusal is not None
    for said in (refusal, str(unavailable.value)):
        assert "<redis." not in said
        assert f"No master found for 'guards' : sentinel {down} - " in said
        assert f"Error 111 connecting to {down}." in said
        assert "sentinel 127.0.0.1:1 - " in said
    assert (
        "no sentinel of redis.sentinel.addresses (REMEDIATOR_REDIS_SENTINELS) named a master"
        " for redis.sentinel.master (REMEDIATOR_REDIS_SENTINEL_MASTER)"
    ) in refusal
