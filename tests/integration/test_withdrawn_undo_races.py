"""An on_resolved step not yet started must not run once its alert fires again, whatever holds
it and however the workers interleave (receiver.episodes, ``Store.withdraw_refired_undo``):

- an approved undo withdrawn by its run job while another worker processes the new episode's
  resolution is carried all the same (not left ``undo_deferred`` after the resolution it waits
  for has passed);
- an undo with no approval that a guard (a pause) holds is withdrawn when its job takes it up
  after the alert fired again, and carried to the alert's next resolution.
"""

from __future__ import annotations

from typing import Any

import pytest

import receiver.store.withdrawal as withdrawal
from receiver.approvals.state import Decision
from receiver.store import EventLease, JobKind
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
            disposition = await h.pipeline(c.event, EventLease(c.event.id, worker))
            assert disposition.is_done, disposition
            if not disposition.settled:
                await h.store.complete_event(c.event.id, worker)


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
