"""The target lock as the tests look at it, and a real Redis that holds every write back
(``writes_held``; from within a step: ``HoldsWrites``, ``pass_writes_held``): a pass whose
lock release Redis does not answer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import ClassVar

import redis.asyncio
from pydantic import BaseModel

from receiver.guards.policy import AdmissionRequest
from receiver.model import Disposition, GuardSpec, RunOutcome
from receiver.pipeline.context import RESOLVE_GUARDS
from receiver.store import ClaimedJob, EventLease, JobKind, RunRecord
from remediations.base import ActionContext, Outcome, Result
from remediations.targets import Target
from tests.support.pipeline import Harness
from tests.support.rules import Restart

__all__ = [
    "HoldsWrites",
    "lock_holder",
    "pass_writes_held",
    "taken_up_after_the_lock",
    "writes_held",
]


async def lock_holder(h: Harness) -> str | None:
    """The run id whose token the harness's one target lock holds; None when none is held."""
    keys = [key async for key in h.guards.redis.scan_iter(match="*lock:*")]
    if not keys:
        return None
    value = await h.guards.redis.get(keys[0])
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.split("|", 1)[1].split("/", 1)[0]


@contextlib.asynccontextmanager
async def writes_held(
    client: redis.asyncio.Redis | redis.asyncio.RedisCluster,
) -> AsyncIterator[None]:
    """While the block runs, the real Redis behind ``client`` holds back every command that
    may write, every Lua script included (``CLIENT PAUSE ... WRITE``, Redis 6.2): the guards'
    calls time out (``GuardSettings.timeout_s``) as they do against a Redis that hangs, and
    their client drops the connection, so a held script never runs afterwards. Reads answer.
    Lifted on the way out (``CLIENT UNPAUSE``); a minute at most if the test dies."""
    await client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        yield
    finally:
        await client.execute_command("CLIENT", "UNPAUSE")


class HoldsWrites(Restart):
    """A step that changes something and counts its calls; its ``hold_on``-th call, once it
    has acted, makes the real Redis behind ``client`` hold every write back (``CLIENT PAUSE
    WRITE``, as ``writes_held``): the rest of its pass (the target lock's release) meets a
    Redis that does not answer, until ``pass_writes_held`` lifts it."""

    name: ClassVar[str] = "test.holds_writes"

    def __init__(
        self, client: redis.asyncio.Redis | redis.asyncio.RedisCluster, hold_on: int
    ) -> None:
        self.client = client
        self.hold_on = hold_on
        self.calls = 0

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        self.calls += 1
        if self.calls == self.hold_on:
            await self.client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        return Result(Outcome.OK, "changed", {"n": 0}, {"n": 1})


async def pass_writes_held(h: Harness) -> Disposition:
    """Process the one claimable event, a ``HoldsWrites`` step of which makes Redis hold every
    write back, then lift that; its disposition. An event not done is handed back due now,
    for the next ``drain``."""
    (claimed,) = await h.store.claim_events(h.owner, 1, 30.0)
    try:
        disposition = await h.pipeline(
            claimed.event, EventLease(claimed.event.id, h.owner, claimed.attempts)
        )
    finally:
        await h.guards.redis.execute_command("CLIENT", "UNPAUSE")
    if not disposition.is_done:
        await h.store.release_event(
            claimed.event.id, h.owner, claimed.attempts, 0.0, disposition.error
        )
    return disposition


async def taken_up_after_the_lock(
    h: Harness, target: Target, labels: dict[str, str]
) -> tuple[RunRecord, ClaimedJob]:
    """The run of an alert of ``labels`` left ``pending`` behind another run's lock on
    ``target``, that lock then given back, and the run's ``resume_run`` job claimed by
    worker-a: what ``h.pipeline.run_job`` takes up next (admitting the run)."""
    holder = AdmissionRequest("another-run", "other", target, False, GuardSpec())
    held = await h.guards.admit(holder, only=RESOLVE_GUARDS)
    assert held.admitted
    await h.deliver(labels)
    (run,) = await h.runs()
    assert run.outcome is RunOutcome.PENDING  # waiting for the lock
    assert await h.guards.release(holder, held)
    await h.store.enqueue_job(JobKind.RESUME_RUN, run.id, delay_s=0)
    (job,) = await h.store.claim_jobs("worker-a", 1, 30.0)
    return run, job
