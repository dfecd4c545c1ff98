"""A run confirms it still holds its target lock before each step after its first (in the
script that asks the pause): a lock lost while a step acted (a Redis that restarted without
its data, a lock deleted or expired, another run admitted to the target meanwhile) stops the
steps left, fail closed, with a message saying the lock was lost. Before, only the pause was
asked: a run in its second step when Redis restarted empty went on to its next step while
another run on the target was admitted, two runs acting on one target at once."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from receiver.model import RunOutcome
from tests.integration.test_pause_between_steps import RULES, UNDO_RULES, Hook
from tests.support.approvals import MakeApprovalEnv, poke_labels


async def _lock_keys(redis: Redis) -> list[bytes]:
    return [key async for key in redis.scan_iter(match="*lock:*")]


async def test_a_redis_restarted_empty_during_a_step_stops_the_steps_after_it(
    approval_env: MakeApprovalEnv,
) -> None:
    hook = Hook()
    env = await approval_env(rules=RULES, actions=[hook])
    h = env.harness
    redis = h.guards.redis
    assert isinstance(redis, Redis)

    async def restart_empty() -> None:
        # What a server without persistence holds after a restart: nothing.
        assert await _lock_keys(redis), "the run acts holding its lock"
        await redis.flushall()

    hook.hook = restart_empty
    await h.deliver(poke_labels())
    run = await h.only_run()
    assert env.peer.pokes == 0
    assert run.outcome is RunOutcome.REFUSED
    steps = {s.action: s for s in run.steps}
    assert steps["test.hook"].outcome == "ok"
    assert steps["test.poke"].outcome == "refused"
    assert "refused by the lock guard: the target lock was lost" in steps["test.poke"].message


async def test_a_lock_taken_by_another_run_during_a_step_stops_the_steps_after_it(
    approval_env: MakeApprovalEnv,
) -> None:
    """The lock expired or was lost while the first step acted, and another run on the target
    was admitted: the second step does not act beside it, and the other run keeps its lock."""
    hook = Hook()
    env = await approval_env(rules=RULES, actions=[hook])
    h = env.harness
    redis = h.guards.redis
    assert isinstance(redis, Redis)
    taken: list[bytes] = []
    # Locked for an hour from now by another run: it holds for the whole test.
    value = f"{time.time_ns() // 1_000_000 + 3_600_000}|other-run/{'0' * 44}".encode()

    async def another_run_admitted() -> None:
        (key,) = await _lock_keys(redis)
        await redis.set(key, value)
        taken.append(key)

    hook.hook = another_run_admitted
    await h.deliver(poke_labels())
    run = await h.only_run()
    assert env.peer.pokes == 0
    steps = {s.action: s for s in run.steps}
    assert steps["test.poke"].outcome == "refused"
    assert "the target lock was lost: it is now held by run other-run" in (
        steps["test.poke"].message
    )
    # Not ours to release: the other run's lock stays.
    assert await redis.get(taken[0]) == value


async def test_a_lock_lost_during_an_undo_step_holds_the_steps_after_it_until_taken_again(
    approval_env: MakeApprovalEnv,
) -> None:
    """A follow-up's steps left are held (as a pause holds them) and a job admits them again,
    taking the lock anew, rather than acting without it."""
    hook = Hook()
    env = await approval_env(rules=UNDO_RULES, actions=[hook])
    h = env.harness
    redis = h.guards.redis
    assert isinstance(redis, Redis)
    await h.deliver(poke_labels())

    async def lock_deleted() -> None:
        keys = await _lock_keys(redis)
        assert keys, "the undo acts holding the lock"
        await redis.delete(*keys)

    hook.hook = lock_deleted
    await h.deliver(poke_labels(), status="resolved")
    hook.hook = None
    run = await h.only_run()
    undo = {s.action: s for s in run.steps if s.phase == "resolve"}
    assert env.peer.pokes == 0
    assert undo["test.hook"].outcome == "ok"
    assert undo["test.poke"].outcome == "pending"
    assert "held by the lock guard: the target lock was lost" in undo["test.poke"].message

    async with h.store._pool.acquire() as conn:
        await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    await h.drain()
    run = await h.only_run()
    undo = {s.action: s for s in run.steps if s.phase == "resolve"}
    assert env.peer.pokes == 1
    assert (undo["test.hook"].outcome, undo["test.poke"].outcome) == ("ok", "ok")
    assert await _lock_keys(redis) == []
