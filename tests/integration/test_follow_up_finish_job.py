"""Endings whose budget slot and target lock were given back only by the pass that wrote them
now queue them with the end (receiver/store/finish.py, pipeline/finish_end.py).

An escalation its alert's resolution overtook (``Store.end_resolved_escalation``), an
escalation a guard refused for good (``Store.end_phase``), a run refused when taken up again
(``Store.record_refusal``): the pass that wrote the end gave the slot (and the lock) back after
its commit, and nothing else did; a death in between, or Redis failing at that moment, kept
the slot spent for the budget's window and the lock held until its TTL. Each test writes the
end through the store alone, as the pass does first, and lets a worker run what the end
queued: the pass died right after its commit. Real PostgreSQL and Redis, and a local HTTP
server as the system the steps act on (``peer``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis.asyncio

from receiver.approvals.state import Decision
from receiver.guards.policy import AdmissionRequest, GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, RunOutcome
from receiver.pipeline.overtaken import MESSAGES
from receiver.store import JobKind, RunRecord, Store
from tests.integration.http.test_dropped_lock import A_RULE, TARGET, lock_token
from tests.integration.test_dropped_resume_jobs import RESTART
from tests.integration.test_ended_run_finish_job import _finish_due_now
from tests.integration.test_escalation_budget import (
    ALICE,
    API,
    HOUR,
    Clock,
    _env,
    _escalated,
    _slots,
)
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv, Peer, poke_labels
from tests.support.events import new_run
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

FINISH = JobKind.FINISH_END.value


async def _escalated_with_its_own_slot(
    approval_env: MakeApprovalEnv, peer: Peer
) -> tuple[ApprovalEnv, RunRecord]:
    """A run whose step acted, whose ladder escalated more than the budget's window later
    (drawing a slot of its own) and waits at its step's approval, approved now."""
    clock = Clock()
    env = await _env(approval_env, peer, clock)
    run = await _escalated(env, clock, timedelta(seconds=HOUR + 60))
    assert list(await _slots(env)) == [run.id]
    held = next(s for s in run.steps if s.phase == "on_failed")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    return env, run


async def _finish_jobs(store: Store, run_id: str) -> list[str]:
    rows, _ = await store.list_jobs(run_id=run_id, kind=FINISH)
    return [row["state"] for row in rows]


async def test_an_overtaken_escalation_whose_pass_died_gives_its_slot_back_by_its_job(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env, run = await _escalated_with_its_own_slot(approval_env, peer)
    store = env.harness.store
    await env.harness.intake.accept(notification(alert(poke_labels(), status="resolved")))

    # The pass that takes the ladder up ends it, and dies after its commit.
    ended = await store.end_resolved_escalation(run.id, MESSAGES)
    assert ended is not None
    await _finish_due_now(store, run.id)
    await env.harness.drain()

    after = await env.harness.only_run()
    assert [(s.phase, s.outcome) for s in after.steps] == [("run", "ok"), ("on_failed", "not_run")]
    assert peer.value == 1  # only the run's own step acted
    assert await _slots(env) == {}, "the escalation's unused slot was kept"
    assert "done" in await _finish_jobs(store, run.id)


async def test_an_escalation_refused_for_good_whose_pass_died_gives_its_slot_back_by_its_job(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env, run = await _escalated_with_its_own_slot(approval_env, peer)
    store = env.harness.store
    held = next(s for s in run.steps if s.phase == "on_failed")
    why = "refused by the namespace guard: denied"

    # The pass that takes the ladder up is refused for good (a namespace the policy no longer
    # permits), records it and ends the escalation, and dies after the commit.
    await store.record_step(
        run.id, idx=held.idx, action=held.action, phase="on_failed", outcome="refused", message=why
    )
    await store.end_phase(run.id, "on_failed", why)
    await _finish_due_now(store, run.id)
    restarted = await _env(approval_env, peer, Clock(), NamespacePolicy(deny=("shop",)))
    await restarted.harness.drain()

    after = await restarted.harness.only_run()
    assert [(s.phase, s.outcome) for s in after.steps] == [("run", "ok"), ("on_failed", "refused")]
    assert peer.value == 1
    assert await _slots(env) == {}, "the escalation's unused slot was kept"


async def _admitted_then_parked(store: Store, guards: Guards) -> tuple[str, str]:
    """A run admitted (a budget slot and the target lock, recorded), then parked at the
    approval of its first step, nothing of it run: its id and the lock's token."""
    run_id = await new_run(store, 0, target=TARGET)
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    admission = await guards.admit(AdmissionRequest(run_id, "r", TARGET, True, GuardSpec()))
    assert admission.admitted
    assert admission.lock_token
    await store.record_admission(run_id, admission.checked, lock_token=admission.lock_token)
    await store.record_step(
        run_id, idx=0, action=RESTART, outcome="awaiting_approval", needs_approval=True
    )
    await store.request_approval(
        run_id=run_id,
        step_idx=0,
        rule="r",
        target=TARGET,
        action=RESTART,
        risk="high",
        plan={"action": RESTART},
        plan_hash="h",
        context={},
        ttl_s=3600.0,
    )
    assert await store.set_run_outcome(run_id, RunOutcome.AWAITING_APPROVAL)
    return run_id, admission.lock_token


async def test_a_run_refused_when_taken_up_whose_pass_died_frees_its_slot_and_lock(
    make_harness: MakeHarness, store: Store, redis_client: redis.asyncio.Redis
) -> None:
    """A run parked at its approval, its admission holding the budget's slot and (its worker
    dead) the target lock, is refused by a pause as it is taken up again; the pass dies after
    recording the refusal. Before, nothing gave either back."""
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings(budget_count=1))
    run_id, token = await _admitted_then_parked(store, guards)
    budget = guards.keys.budget()
    assert await redis_client.zrange(budget, 0, -1) == [run_id.encode()]
    assert await lock_token(redis_client, guards) == token

    recorded = await store.record_refusal(
        run_id, "pause", "paused", None, expect=RunOutcome.AWAITING_APPROVAL
    )
    assert recorded.found
    await _finish_due_now(store, run_id)
    h = await make_harness(A_RULE)
    await h.drain()

    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.REFUSED
    assert await redis_client.zrange(budget, 0, -1) == [], "the run's unused slot was kept"
    assert await lock_token(redis_client, guards) is None, "the ended run's lock was kept"
