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
