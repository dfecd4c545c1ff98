"""An on_resolved step not yet started must not run once its alert fires again, whatever holds
it and however the workers interleave (receiver.episodes, ``Store.withdraw_refired_undo``):

- an approved undo withdrawn by its run job while another worker processes the new episode's
  resolution is carried all the same (not left ``undo_deferred`` after the resolution it waits
  for has passed);
- an undo with no approval that a guard (a pause) holds is withdrawn when its job takes it up
  after the alert fired again, and carried to the alert's next resolution;
- an undo that such a withdrawal carries at once (the resolution came meanwhile) while that
  resolution's own pass reaches its ``Close`` is taken up by one of them only: its step acts
  once, and a marked step is not found ``started`` by the other and recorded ``interrupted``;
  a resolution retried after its first attempt carried the undo leaves the steps to that
  carry's job, which finishes them.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import aiohttp
import pytest
from pydantic import BaseModel

import receiver.store.withdrawal as withdrawal
from receiver.approvals.state import Decision
from receiver.store import EventLease, JobKind, StoreUnavailable
from remediations.base import ActionContext, Outcome, Result
from remediations.targets import Target
from tests.integration.test_approved_undo_refire import ALICE, API, take_up_jobs
from tests.integration.test_refire_withdraws_undo import (
    RULES,
    SetValue,
    held_approval,
    runs_in_order,
    send,
)
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv, Peer, poke_labels
from tests.support.payloads import alert, notification

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# The same rule, its undo needing no approval: only a guard can hold it.
NO_APPROVAL = RULES.replace(
    "        params: {value: 20}\n        approval: required",
    "        params: {value: 20}\n        approval: never",
)


async def events_only(env: ApprovalEnv, worker: str = "replica-b") -> None:
    """Process the stored alert events as a second replica would, and no job: the events
    claimed by ``worker`` run through the pipeline until none is left."""
    h = env.harness
    while claimed := await h.store.claim_events(worker, 50, 30.0):
        for c in claimed:
            disposition = await h.pipeline(c.event, EventLease(c.event.id, worker, c.attempts))
            assert disposition.is_done, disposition
            if not disposition.settled:
                await h.store.complete_event(c.event.id, worker, c.attempts)


async def accept(env: ApprovalEnv, status: str, starts_at: str, ends_at: str | None = None) -> None:
    """Store an event of the alert (intake), not processed yet."""
    await env.harness.intake.accept(
        notification(alert(poke_labels(), status=status, starts_at=starts_at, ends_at=ends_at))
    )


async def test_an_undo_withdrawn_while_the_next_resolution_is_processed_is_carried(
    approval_env: MakeApprovalEnv, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer.value = 20
    env = await approval_env(rules=RULES, actions=[SetValue(peer.url)])
    await send(env, "firing", "2026-11-25T10:00:00Z")
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    [first] = await runs_in_order(env)
    approval = await held_approval(env, first)
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    # The next episode fires; replica B processes it (the approval is no longer pending, so
    # the firing withdraws nothing).
    await accept(env, "firing", "2026-11-25T10:10:00Z")
    await events_only(env)

    real = withdrawal._withdraw
    calls = 0

    async def racing(*args: Any, **kwargs: Any) -> Any:
        # Replica A has read the alert's events (it fires again) under the run's row lock;
        # before A commits, the episode resolves and replica B processes that resolution.
        nonlocal calls
        calls += 1
        if calls == 1:
            await accept(env, "resolved", "2026-11-25T10:10:00Z", "2026-11-25T10:15:00Z")
            await events_only(env)
        return await real(*args, **kwargs)

    monkeypatch.setattr(withdrawal, "_withdraw", racing)
    assert await take_up_jobs(env) == 1  # replica A: the approved undo's run job
    await env.harness.drain()
    assert calls == 1
    assert peer.value == 5  # not run while the alert fired again

    # The alert is quiet now: the undo is carried, its approval asked for again.
    first, _ = await runs_in_order(env)
    held = [s for s in first.steps if s.phase == "resolve" and s.outcome == "awaiting_approval"]
    assert not first.undo_deferred, [(s.idx, s.phase, s.outcome) for s in first.steps]
    assert len(held) == 1
    again = await held_approval(env, first)
    assert again.id != approval.id
    await env.desk.decide(again.id, Decision.APPROVE, ALICE, API)
    assert await take_up_jobs(env) == 1
    await env.harness.drain()
    assert peer.value == 20  # taken back once, at the quiet alert
    first, _ = await runs_in_order(env)
    assert [s.outcome for s in first.steps if s.phase == "resolve"] == ["not_run", "ok"]


async def test_a_guard_held_undo_is_withdrawn_when_the_alert_fired_again(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    assert NO_APPROVAL != RULES
    peer.value = 20
    env = await approval_env(rules=NO_APPROVAL, actions=[SetValue(peer.url)])
    await send(env, "firing", "2026-11-25T10:00:00Z")
    assert peer.value == 5
    await env.harness.guards.pause(None, "change freeze")
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    assert peer.value == 5  # the undo is held by the pause
    await send(env, "firing", "2026-11-25T10:10:00Z")  # fires again (its run refused: paused)
    await env.harness.guards.resume()
    first = (await runs_in_order(env))[0]
    await env.harness.store.enqueue_job(JobKind.RESUME_RESOLVE, first.id)
    await env.harness.drain()
    # The alert fires (the 10:10 episode, unresolved): the undo waits for its resolution.
    assert peer.value == 5, "the held undo took the remediation back while the alert fires again"
    first = (await runs_in_order(env))[0]
    assert first.undo_deferred
    assert [s.outcome for s in first.steps if s.phase == "resolve"] == ["not_run"]

    # Carried to that resolution, it runs then.
    await send(env, "resolved", "2026-11-25T10:10:00Z", "2026-11-25T10:15:00Z")
    assert peer.value == 20
    first = (await runs_in_order(env))[0]
    assert not first.undo_deferred
    assert [s.outcome for s in first.steps if s.phase == "resolve"] == ["not_run", "ok"]


class Racing(SetValue):
    """test.set whose first undo call (value 20) waits after it read the value and before it
    writes until ``release`` is set, so another worker can run meanwhile; it keeps the value
    of each write (``posts``)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.posts: list[int] = []
        self.blocked = False
        self.inside = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        value, wanted = await self._value(ctx), getattr(params, "value", 0)
        if value == wanted:
            return Result(Outcome.NOOP, f"{wanted} already", {"value": value}, {"value": value})
        if wanted == 20 and not self.blocked:
            self.blocked = True
            self.inside.set()
            await self.release.wait()
        self.posts.append(wanted)
        session: aiohttp.ClientSession = ctx.clients.get("http")
        async with session.post(f"{self.base_url}/set", json={"value": wanted}) as response:
            after = int((await response.json())["value"])
        return Result(Outcome.OK, f"set {value} -> {after}", {"value": value}, {"value": after})


class RacingMarked(Racing):
    """``Racing`` not safe to replay: the step runner marks it ``started`` before it acts."""

    replay_safe: ClassVar[bool] = False


@pytest.mark.parametrize("action_cls", [Racing, RacingMarked], ids=["replay-safe", "marked"])
async def test_an_undo_carried_by_a_withdrawal_and_by_the_resolution_runs_once(
    approval_env: MakeApprovalEnv,
    peer: Peer,
    monkeypatch: pytest.MonkeyPatch,
    action_cls: type[Racing],
) -> None:
    peer.value = 20
    action = action_cls(peer.url)
    env = await approval_env(rules=NO_APPROVAL, actions=[action])
    store = env.harness.store
    await send(env, "firing", "2026-11-25T10:00:00Z")
    assert peer.value == 5
    await env.harness.guards.pause(None, "change freeze")
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    await send(env, "firing", "2026-11-25T10:10:00Z")
    await env.harness.guards.resume()
    first = (await runs_in_order(env))[0]
    # The held undo's own job (left by the pause) is replaced by one due now: replica A's.
    async with store._tx() as conn:
        await conn.execute("DELETE FROM jobs")
    await store.enqueue_job(JobKind.RESUME_RESOLVE, first.id)

    real_carry_if = store._carry_if_resolved
    real_carry_undo = store.carry_undo
    b_at_carry, a_carried = asyncio.Event(), asyncio.Event()
    b_pass: list[asyncio.Task[None]] = []

    async def carry_undo(run_id: str, *args: Any, **kwargs: Any) -> bool:
        # Replica B's Close, its history read made after A's withdrawal: A carries first.
        b_at_carry.set()
        await a_carried.wait()
        return await real_carry_undo(run_id, *args, **kwargs)

    async def carry_if_resolved(run_id: str, withdrawn: Any) -> bool:
        # A's withdrawal committed; replica B stores and processes the resolution now.
        monkeypatch.setattr(store, "carry_undo", carry_undo)
        await accept(env, "resolved", "2026-11-25T10:10:00Z", "2026-11-25T10:15:00Z")
        b_pass.append(asyncio.create_task(events_only(env)))
        await asyncio.wait_for(b_at_carry.wait(), 20)
        carried = await real_carry_if(run_id, withdrawn)
        assert carried, "A's carry did not come first: the interleaving was not made"
        a_carried.set()
        return carried

    monkeypatch.setattr(store, "_carry_if_resolved", carry_if_resolved)
    [job] = await store.claim_jobs("replica-a", 50, 30.0)
    await env.harness.pipeline.run_job(job)
    await store.complete_job(job.id, "replica-a", job.attempts)

    async def replica_c() -> None:
        # Claims every job due (the carry's, due at once) and runs it.
        for claimed in await store.claim_jobs("replica-c", 50, 30.0):
            await env.harness.pipeline.run_job(claimed)
            await store.complete_job(claimed.id, "replica-c", claimed.attempts)

    c_pass = asyncio.create_task(replica_c())
    # One pass is in the step (the value read, not written); the other one runs to its end
    # meanwhile, acting on the step too if it took it up, before the first one writes.
    await asyncio.wait_for(action.inside.wait(), 20)
    await asyncio.wait({b_pass[0], c_pass}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    action.release.set()
    await asyncio.wait_for(asyncio.gather(b_pass[0], c_pass), 20)
    await env.harness.drain()

    first = (await runs_in_order(env))[0]
    audit = await store.audit_entries(first.id)
    kinds = [e["kind"] for e in audit]
    trail = [
        (e["data"]["idx"], e["data"]["outcome"])
        for e in audit
        if e["kind"] == "step" and e["data"]["phase"] == "resolve"
    ]
    assert kinds.count("run.undo_carried") == 1
    assert action.posts.count(20) == 1, f"the carried undo step acted twice: {trail}"
    assert peer.value == 20
    assert all(outcome != "interrupted" for _idx, outcome in trail), trail
    assert "run.undo_stopped" not in kinds, trail
    assert [s.outcome for s in first.steps if s.phase == "resolve"] == ["not_run", "ok"]


async def test_a_resolution_retried_after_it_carried_the_undo_leaves_it_to_the_carrys_job(
    approval_env: MakeApprovalEnv, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer.value = 20
    env = await approval_env(rules=NO_APPROVAL, actions=[SetValue(peer.url)])
    store = env.harness.store
    await send(env, "firing", "2026-11-25T10:00:00Z")
    assert peer.value == 5
    # A later episode fires: the first run is closed, its undo deferred to its resolution.
    await send(env, "firing", "2026-11-25T10:10:00Z")
    first = (await runs_in_order(env))[0]
    assert first.undo_deferred

    real = store.carry_undo

    async def carry_then_crash(*args: Any, **kwargs: Any) -> bool:
        # The first attempt's carry commits; the store goes away before its answer arrives.
        await real(*args, **kwargs)
        monkeypatch.setattr(store, "carry_undo", real)
        raise StoreUnavailable("connection lost")

    monkeypatch.setattr(store, "carry_undo", carry_then_crash)
    await accept(env, "resolved", "2026-11-25T10:10:00Z", "2026-11-25T10:15:00Z")
    [claimed] = await store.claim_events("replica-b", 50, 30.0)
    lease = EventLease(claimed.event.id, "replica-b", claimed.attempts)
    with pytest.raises(StoreUnavailable):
        await env.harness.pipeline(claimed.event, lease)
    # The retry finds the undo carried: its steps are the carry's job's, not this pass's.
    assert (await env.harness.pipeline(claimed.event, lease)).is_done
    assert peer.value == 5
    first = (await runs_in_order(env))[0]
    assert [s.outcome for s in first.steps if s.phase == "resolve"] == ["pending"]

    # The carry's job, due a retry interval later, finishes the undo.
    async with store._tx() as conn:
        await conn.execute("UPDATE jobs SET not_before = remediator_now()")
    await env.harness.drain()
    assert peer.value == 20
    first = (await runs_in_order(env))[0]
    assert [s.outcome for s in first.steps if s.phase == "resolve"] == ["ok"]
