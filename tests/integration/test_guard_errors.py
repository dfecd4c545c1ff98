"""A Redis error reply is not an outage: the guards' script failing on what it was given raises
GuardError (the work fails and counts toward its dead letter); a server that cannot take writes
right now is GuardUnavailable (the work waits). Against a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio

from receiver.guards.policy import AdmissionRequest, GuardError, GuardSettings, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy
from remediations.targets import Target
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, MakeHarness
from tests.support.polling import eventually
from tests.support.redis import RedisServer
from tests.support.servers import server_missing

pytestmark = pytest.mark.redis

TARGET = Target("Deployment", "shop", "checkout")


def _request(spec: GuardSpec) -> AdmissionRequest:
    return AdmissionRequest("run-1", "rule", TARGET, True, spec)


@pytest.mark.parametrize(
    "spec",
    [
        # What `cooldown: 99999999999999999999999w` and friends used to reach the script as:
        # the rule schema now refuses them, so the request is built by hand.
        GuardSpec(cooldown_s=6e28),
        GuardSpec(max_runs=3, max_runs_per_s=6e28),
    ],
)
async def test_a_script_error_is_a_guard_error_not_unavailable(
    redis_client: redis.asyncio.Redis, spec: GuardSpec
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    with pytest.raises(GuardError, match="refused the guards' admit script"):
        await guards.admit(_request(spec))
    # Nothing was committed: a plain request is admitted, with no cooldown or lock left behind.
    assert (await guards.admit(_request(GuardSpec()))).admitted


async def test_a_read_only_server_is_unavailable_not_an_error(
    redis_server: RedisServer, redis_client: redis.asyncio.Redis
) -> None:
    if not redis_server.managed:
        server_missing("a Redis server the tests may turn into a replica")
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    # A replica of a master that does not exist refuses writes with READONLY, as a Redis left
    # read-only by a failover does.
    await redis_client.replicaof("127.0.0.1", "1")
    try:
        with pytest.raises(GuardUnavailable):
            await guards.admit(_request(GuardSpec(cooldown_s=60)))
    finally:
        await redis_client.replicaof("NO", "ONE")
    assert (await guards.admit(_request(GuardSpec(cooldown_s=60)))).admitted


@pytest.mark.postgres
async def test_an_event_whose_admission_keeps_failing_ends_dead(make_harness: MakeHarness) -> None:
    # A lock TTL no Redis takes (settings are bounded now; built by hand here): every admission
    # is refused by Redis with an error. Before, that read as "guards unavailable" and the event
    # was retried for ever; now each attempt fails and the third makes it dead.
    h = await make_harness(RESTART_WEB, GuardSettings(lock_ttl_s=6e28))
    worker = h.worker(concurrency=1, poll_interval_s=0.05)
    labels = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "cart"}
    await h.intake.accept(notification(alert(labels)))
    await worker.start()
    try:

        async def dead() -> list[dict[str, Any]]:
            rows, _ = await h.store.list_events(state="dead")
            return rows

        [event] = await eventually(dead)
    finally:
        await worker.stop(2)
    assert event["failures"] == 3
    assert event["last_error"].startswith("GuardError: redis refused the guards' admit script")


def _committed_keys(keys: list[bytes | str]) -> list[str]:
    """The guard keys an admission commits (all but the fence a test wrote itself)."""
    names = (k.decode() if isinstance(k, bytes) else k for k in keys)
    return sorted(k for k in names if ":fence:" not in k)


@pytest.mark.parametrize("fence", ["garbage", "1.5", "-3", "9" * 19, "a hash"])
async def test_a_fence_set_by_hand_to_what_incr_cannot_take_fails_before_any_commit(
    redis_client: redis.asyncio.Redis, fence: str
) -> None:
    # The fence is the last thing the admission commits. A script's error undoes nothing, so
    # before, its INCR failing left the cooldown started, the rate and budget slots spent and
    # the target locked for a run that fails and never acts.
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    key = guards.keys.fence(TARGET)
    if fence == "a hash":
        await redis_client.hset(key, "set", "by hand")
    else:
        await redis_client.set(key, fence)
    spec = GuardSpec(cooldown_s=60, max_runs=3, max_runs_per_s=600)
    with pytest.raises(GuardError, match=f"lock guard cannot read its key.*{key}"):
        await guards.admit(_request(spec))
    assert _committed_keys(await redis_client.keys("*")) == []
    # Fixed as the error says, the run is admitted with the next fence.
    await redis_client.delete(key)
    await redis_client.set(key, "41")
    admission = await guards.admit(_request(spec))
    assert admission.admitted
    assert admission.fence == 42


async def test_a_guard_key_of_another_type_names_the_guard_and_key(
    redis_client: redis.asyncio.Redis,
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    key = guards.keys.cooldown("rule", TARGET)
    await redis_client.hset(key, mapping={"set": "by hand"})
    with pytest.raises(
        GuardError, match=f"the cooldown guard cannot read its key.* {key}: WRONGTYPE"
    ):
        await guards.admit(_request(GuardSpec(cooldown_s=60)))
    assert _committed_keys(await redis_client.keys("*")) == [key]


@pytest.mark.parametrize("until", ["soon", "1.5e3x", "tomorrow"])
async def test_a_pause_whose_end_is_not_a_time_holds_and_the_status_answers(
    redis_client: redis.asyncio.Redis, until: str
) -> None:
    # Before, the admit script compared nil with a number and raised: every admission failed
    # (a GuardError, the events toward their dead letters) and the status raised ValueError.
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    await guards.pause(3600, "maintenance", by="alice")
    await redis_client.hset(guards.keys.pause(), "until", until)
    refusal = (await guards.admit(_request(GuardSpec()))).refusal
    assert refusal is not None
    assert refusal.guard == "pause"
    assert "is not a time: paused until resumed" in refusal.reason
    assert refusal.retry_at is None
    status = await guards.status()
    assert status["paused"] is True
    assert status["pause"]["reason"] == "maintenance"
    assert status["pause"]["until"] is None
    await guards.resume()
    assert (await guards.admit(_request(GuardSpec()))).admitted


async def test_a_breaker_whose_end_is_not_a_time_reads_open_in_the_status(
    redis_client: redis.asyncio.Redis,
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    await redis_client.set(guards.keys.breaker("rule"), "by hand")
    refusal = (await guards.admit(_request(GuardSpec()))).refusal
    assert refusal is not None
    assert refusal.guard == "breaker"
    status = await guards.status()
    assert status["breakers"]["rule"]["open"] is True
    assert status["breakers"]["rule"]["open_until"] is None
