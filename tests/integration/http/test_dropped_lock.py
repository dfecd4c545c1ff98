"""A run ended by the drop of the job it waited on gives back the target lock it may still hold
(``POST /api/v1/jobs/{id}/drop``), by its run id, after the drop committed; real PostgreSQL
and Redis.

A run parked at an approval whose worker died before giving its lock back holds it until
``guards.lock_ttl``; before, dropping its ``resume_run`` job left it there, the run ended. Redis
not answering, a ``release_lock`` job gives it back later (pipeline/lock_release.py)."""

from __future__ import annotations

import json

import pytest
import redis.asyncio

from receiver.embedded.process import free_port
from receiver.guards.policy import AdmissionRequest, GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, RunOutcome, Target
from receiver.pipeline.lock_release import HELD_BY_RUN
from receiver.store import JobKind, Store
from tests.integration.test_dropped_resume_jobs import open_job, parked_run
from tests.support.http import OPERATOR, MakeClient

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WHERE = {"kind": "Deployment", "namespace": "shop", "name": "d0"}


@pytest.fixture
def guards(redis_client: redis.asyncio.Redis) -> Guards:
    return Guards(redis_client, NamespacePolicy(), GuardSettings())


async def locked_parked_run(store: Store, guards: Guards) -> tuple[str, int]:
    """A run parked at an approval that still holds its target's lock: its id and its job's."""
    run_id, _ = await parked_run(store, 0)
    request = AdmissionRequest(run_id, "r", Target("Deployment", "shop", "d0"), True, GuardSpec())
    assert (await guards.admit(request)).admitted
    return run_id, await open_job(store, run_id, JobKind.RESUME_RUN)


async def test_the_drop_releases_the_lock_the_ended_run_held(
    make_client: MakeClient, store: Store, guards: Guards, redis_client: redis.asyncio.Redis
) -> None:
    run_id, job_id = await locked_parked_run(store, guards)
    lock = guards.keys.lock(Target("Deployment", "shop", "d0"))
    assert await redis_client.get(lock) is not None
    client = await make_client(locks=guards)

    response = await client.post(
        f"/api/v1/jobs/{job_id}/drop", headers=OPERATOR, json={"reason": "stale"}
    )

    assert response.status == 200
    job = (await response.json())["job"]
    assert job["run_ended"] == "cancelled"
    assert job["target_lock"] == {"rule": "r", "target": WHERE, "released": True}
    assert await redis_client.get(lock) is None
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.CANCELLED


async def test_another_runs_lock_is_left_alone(
    make_client: MakeClient, store: Store, guards: Guards, redis_client: redis.asyncio.Redis
) -> None:
    run_id, _ = await parked_run(store, 0)
    other = AdmissionRequest(
        "other-run", "r", Target("Deployment", "shop", "d0"), True, GuardSpec()
    )
    assert (await guards.admit(other)).admitted
    client = await make_client(locks=guards)

    response = await client.post(
        f"/api/v1/jobs/{await open_job(store, run_id, JobKind.RESUME_RUN)}/drop",
        headers=OPERATOR,
        json={"reason": "stale"},
    )

    job = (await response.json())["job"]
    assert job["target_lock"]["released"] is False
    assert await redis_client.get(guards.keys.lock(other.target)) is not None


async def test_without_redis_a_release_lock_job_is_queued_for_the_lock(
    make_client: MakeClient, store: Store, guards: Guards, redis_client: redis.asyncio.Redis
) -> None:
    """Redis not answering the drop's release: a ``release_lock`` job (``held_by_run``) gives
    the lock back once it answers, and the answer names it. Before, the answer said the lock
    ends with its TTL, and it held the target that long though the run had ended."""
    run_id, job_id = await locked_parked_run(store, guards)
    lock = guards.keys.lock(Target("Deployment", "shop", "d0"))
    nobody = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=1)
    client = await make_client(locks=Guards(nobody, NamespacePolicy(), GuardSettings()))
    try:
        response = await client.post(
            f"/api/v1/jobs/{job_id}/drop", headers=OPERATOR, json={"reason": "stale"}
        )
    finally:
        await nobody.aclose()

    assert response.status == 200
    job = (await response.json())["job"]
    assert job["run_ended"] == "cancelled"
    said = job["target_lock"]
    assert said["released"] is None
    [queued] = (await store.list_jobs(run_id=run_id, kind=JobKind.RELEASE_LOCK.value))[0]
    assert queued["state"] == "pending"
    assert said["release_job"] == queued["id"]
    assert f"release_lock job {queued['id']} gives the lock back" in said["note"]
    async with store._pool.acquire() as conn:
        payload = await conn.fetchval("SELECT payload FROM jobs WHERE id = $1", queued["id"])
    assert json.loads(payload) == {HELD_BY_RUN: True}
    # Until the job runs, the lock stays: no second run is admitted on the target meanwhile.
    assert await redis_client.get(lock) is not None
