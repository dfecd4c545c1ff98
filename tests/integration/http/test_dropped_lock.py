"""A run ended by the drop of the job it waited on gives back the target lock it may still hold
(``POST /api/v1/jobs/{id}/drop``), after the drop committed, by the exact token its last
admission took (its ``run.admitted`` row); real PostgreSQL and Redis.

A run parked at an approval whose worker died before giving its lock back holds it until
``guards.lock_ttl``; before, dropping its ``resume_run`` job left it there, the run ended. Redis
not answering, a ``release_lock`` job gives it back later (pipeline/lock_release.py). The run's
undo, admitted under the same run id with a token of its own, keeps its lock."""

from __future__ import annotations

import json

import pytest
import redis.asyncio

from receiver.embedded.process import free_port
from receiver.guards.policy import AdmissionRequest, GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, RunOutcome, Target
from receiver.pipeline.context import RESOLVE_GUARDS
from receiver.pipeline.lock_release import GIVE_BACK
from receiver.store import JobKind, Store
from tests.integration.test_dropped_resume_jobs import open_job, parked_run
from tests.support.http import OPERATOR, MakeClient
from tests.support.pipeline import MakeHarness

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WHERE = {"kind": "Deployment", "namespace": "shop", "name": "d0"}
TARGET = Target("Deployment", "shop", "d0")
# The harness that runs the drop's release_lock job: any rule will do.
A_RULE = """
rules:
  - name: r
    match: ['alertname="Other"']
    target: {kind: Deployment, namespace: shop, name: d0}
    steps:
      - action: kubernetes.rollout_restart
"""


@pytest.fixture
def guards(redis_client: redis.asyncio.Redis) -> Guards:
    return Guards(redis_client, NamespacePolicy(), GuardSettings())


async def locked_parked_run(store: Store, guards: Guards) -> tuple[str, int, str]:
    """A run parked at an approval that still holds the target lock its admission took and
    recorded (``run.admitted``): its id, its job's and the lock's token."""
    run_id, _ = await parked_run(store, 0)
    request = AdmissionRequest(run_id, "r", TARGET, True, GuardSpec())
    admission = await guards.admit(request)
    assert admission.admitted
    assert admission.lock_token
    await store.record_admission(run_id, admission.checked, lock_token=admission.lock_token)
    return run_id, await open_job(store, run_id, JobKind.RESUME_RUN), admission.lock_token


async def undo_admitted(guards: Guards, run_id: str) -> str:
    """The run's undo (its on_resolved steps) admitted under the run's id, as its alert's
    resolution admits it: a token of its own over the run's. That token."""
    undo = await guards.admit(
        AdmissionRequest(run_id, "r", TARGET, False, GuardSpec()), only=RESOLVE_GUARDS
    )
    assert undo.admitted
    assert undo.lock_token
    return undo.lock_token


async def lock_token(redis_client: redis.asyncio.Redis, guards: Guards) -> str | None:
    """The token the target's lock holds (its value less the until-time); None: free."""
    value = await redis_client.get(guards.keys.lock(TARGET))
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.split("|", 1)[1]


async def test_the_drop_releases_the_lock_the_ended_run_held(
    make_client: MakeClient, store: Store, guards: Guards, redis_client: redis.asyncio.Redis
) -> None:
    run_id, job_id, _ = await locked_parked_run(store, guards)
    lock = guards.keys.lock(TARGET)
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
    """Redis not answering the drop's release: a ``release_lock`` job naming the token of the
    run's admission gives the lock back once it answers, and the answer names it. Before, the
    answer said the lock ends with its TTL, and it held the target that long though the run
    had ended."""
    run_id, job_id, token = await locked_parked_run(store, guards)
    lock = guards.keys.lock(TARGET)
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
    assert json.loads(payload) == {GIVE_BACK + token: True}
    # Until the job runs, the lock stays: no second run is admitted on the target meanwhile.
    assert await redis_client.get(lock) is not None


async def test_the_drop_leaves_alone_the_lock_the_runs_undo_took_since(
    make_client: MakeClient, store: Store, guards: Guards, redis_client: redis.asyncio.Redis
) -> None:
    """The run's undo holds the lock under the run's id when the drop releases it (its
    alert's resolution admitted it once the drop committed). Before, the drop released by the
    run's id whatever token the lock held: the undo's lock was freed under it, and another
    run could be admitted on the target while the undo acted."""
    run_id, job_id, _ = await locked_parked_run(store, guards)
    undo = await undo_admitted(guards, run_id)
    client = await make_client(locks=guards)

    response = await client.post(
        f"/api/v1/jobs/{job_id}/drop", headers=OPERATOR, json={"reason": "stale"}
    )

    job = (await response.json())["job"]
    assert job["run_ended"] == "cancelled"
    assert job["target_lock"] == {"rule": "r", "target": WHERE, "released": False}
    assert await lock_token(redis_client, guards) == undo


async def test_the_release_lock_job_of_a_drop_leaves_alone_the_lock_the_runs_undo_took(
    make_client: MakeClient,
    make_harness: MakeHarness,
    store: Store,
    guards: Guards,
    redis_client: redis.asyncio.Redis,
) -> None:
    """Redis did not answer the drop's release; the alert then resolves and the run's undo is
    admitted under its id, over the dead worker's token; then the drop's ``release_lock`` job
    runs. Before, that job (``held_by_run``) freed whatever lock the run held, the live undo's
    included: the target unlocked under a step acting on it. Now it gives back only the
    token the run's admission took, and the undo keeps its lock."""
    run_id, job_id, _ = await locked_parked_run(store, guards)
    nobody = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=1)
    client = await make_client(locks=Guards(nobody, NamespacePolicy(), GuardSettings()))
    try:
        response = await client.post(
            f"/api/v1/jobs/{job_id}/drop", headers=OPERATOR, json={"reason": "stale"}
        )
    finally:
        await nobody.aclose()
    assert (await response.json())["job"]["target_lock"]["release_job"]
    undo = await undo_admitted(guards, run_id)

    h = await make_harness(A_RULE)
    await store.enqueue_job(JobKind.RELEASE_LOCK, run_id, delay_s=0)  # due now
    await h.drain()

    [done] = (await store.list_jobs(run_id=run_id, kind=JobKind.RELEASE_LOCK.value))[0]
    assert done["state"] == "done"
    assert await lock_token(redis_client, guards) == undo, "the undo's lock was freed"


async def test_a_drop_whose_process_died_after_the_commit_still_releases_the_lock(
    make_harness: MakeHarness, store: Store, guards: Guards, redis_client: redis.asyncio.Redis
) -> None:
    """The drop committed and its process died before releasing the lock (the store's drop
    alone, as the HTTP drop calls it first): the ``finish_end`` job queued with the drop gives
    back the token of the run's admission. Before, the job did not name the lock, and it held
    the target until ``guards.lock_ttl`` though the run had ended."""
    run_id, job_id, token = await locked_parked_run(store, guards)

    await store.drop_job(job_id, actor="alice", reason="stale")
    assert await lock_token(redis_client, guards) == token
    h = await make_harness(A_RULE)
    await h.drain()

    [done] = (await store.list_jobs(run_id=run_id, kind=JobKind.FINISH_END.value))[0]
    assert done["state"] == "done"
    assert await lock_token(redis_client, guards) is None, "the ended run's lock was kept"
