"""A run that ends at its approval (expired, rejected, cancelled: nothing of it acted), or that a
guard refuses when taken up after its approval with no step of it acted, gives back
the global budget slot its admission drew (receiver/pipeline/budget.py): ignored approvals in a
storm used to refuse every later disruptive run for the budget's hour, and the refusal counted
actions that never happened. Against a real PostgreSQL and Redis."""

from __future__ import annotations

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.guards.policy import GuardSettings
from receiver.model import RunOutcome
from receiver.store import RunRecord
from tests.support.approvals import (
    ApprovalEnv,
    DisruptivePoke,
    MakeApprovalEnv,
    Peer,
    budget_slots,
    poke_labels,
)
from tests.support.payloads import alert, notification

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")
RULES = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.disruptive_poke
"""


async def _budget_of_one(approval_env: MakeApprovalEnv, peer: Peer) -> ApprovalEnv:
    return await approval_env(
        rules=RULES,
        actions=[DisruptivePoke(peer.url)],
        guard_settings=GuardSettings(budget_count=1),
    )


async def _parked(env: ApprovalEnv, name: str) -> RunRecord:
    """Deliver a Poke alert for ``name``: its run parks, waiting for approval."""
    await env.harness.deliver(poke_labels(name))
    [run] = [r for r in await env.harness.runs() if r.target.name == name]
    assert run.outcome is RunOutcome.AWAITING_APPROVAL, run
    return run


async def _end(env: ApprovalEnv, run: RunRecord, how: str) -> None:
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None
    if how == "rejected":
        await env.desk.decide(approval.id, Decision.REJECT, ALICE, API, reason="not now")
    elif how == "expired":
        # The expiry is the resume job due at expires_at; move both into the past.
        async with env.harness.store._tx() as conn:
            await conn.execute(
                "UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
                approval.id,
            )
            await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    else:
        labels = poke_labels(run.target.name)
        await env.harness.intake.accept(notification(alert(labels, status="resolved")))
    await env.harness.drain()
    ended = await env.harness.store.get_run(run.id)
    assert ended is not None
    assert ended.outcome is RunOutcome(how), ended


@pytest.mark.parametrize("how", ["rejected", "expired", "cancelled"])
async def test_a_run_ended_at_its_approval_gives_its_budget_slot_back(
    approval_env: MakeApprovalEnv, peer: Peer, how: str
) -> None:
    env = await _budget_of_one(approval_env, peer)
    first = await _parked(env, "api")
    assert await budget_slots(env) == [first.id]  # its admission drew the one slot
    await _end(env, first, how)
    assert await budget_slots(env) == []
    assert peer.value == 0  # nothing acted
    # The next disruptive run is admitted, not refused by a budget spent on nothing.
    second = await _parked(env, "web")
    assert second.refusal_guard is None
    assert await budget_slots(env) == [second.id]


async def test_a_slot_in_use_is_kept(approval_env: MakeApprovalEnv, peer: Peer) -> None:
    env = await _budget_of_one(approval_env, peer)
    first = await _parked(env, "api")
    approval = await env.desk.store.latest_approval(first.id, 0)
    assert approval is not None
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    done = await env.harness.store.get_run(first.id)
    assert done is not None
    assert peer.value == 1  # it acted: the slot stays spent
    assert await budget_slots(env) == [first.id]
    await env.harness.deliver(poke_labels("web"))
    [second] = [r for r in await env.harness.runs() if r.target.name == "web"]
    assert second.outcome is RunOutcome.REFUSED
    assert second.refusal_guard == "budget"


async def test_a_rejection_through_the_routes_view_of_the_desk_gives_the_slot_back(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # The routes decide through a copy of the desk over their bounded store (`over`): it tells
    # the pipeline too, whichever of the two was made first.
    env = await _budget_of_one(approval_env, peer)
    hook = env.desk.ended  # the pipeline's, set when the harness built it
    assert hook is not None
    env.desk.ended = None
    routes_desk = env.desk.over(env.harness.store.bounded(5.0))
    env.desk.ended = hook  # set after the copy was taken
    first = await _parked(env, "api")
    approval = await routes_desk.store.latest_approval(first.id, 0)
    assert approval is not None
    await routes_desk.decide(approval.id, Decision.REJECT, ALICE, API, reason="not now")
    assert await budget_slots(env) == []


async def test_an_approved_run_refused_by_a_pause_gives_its_slot_back(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """Approved, then refused by a pause on its way to the step: the run ends having changed
    nothing, as an expired approval's does. Its slot was kept, and a budget of one refused
    every disruptive run for the window after the pause was lifted."""
    env = await _budget_of_one(approval_env, peer)
    first = await _parked(env, "api")
    approval = await env.desk.store.latest_approval(first.id, 0)
    assert approval is not None
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.guards.pause(None, "change freeze", by="bob")
    await env.harness.drain()
    ended = await env.harness.store.get_run(first.id)
    assert ended is not None
    assert (ended.outcome, ended.refusal_guard) == (RunOutcome.REFUSED, "pause"), ended
    assert peer.value == 0  # nothing acted
    assert await budget_slots(env) == []
    await env.harness.guards.resume()
    second = await _parked(env, "web")
    assert second.refusal_guard is None
    assert await budget_slots(env) == [second.id]


async def test_a_run_refused_after_a_step_of_it_acted_keeps_its_slot(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """A step ran before the one that waited for approval: the run disrupted, so a pause that
    refuses it on its way to the approved step leaves its slot spent."""
    rules = RULES.replace(
        "      - action: test.disruptive_poke\n",
        "      - action: test.disruptive_poke\n        approval: never\n"
        "      - action: test.disruptive_poke\n",
    )
    env = await approval_env(
        rules=rules,
        actions=[DisruptivePoke(peer.url)],
        guard_settings=GuardSettings(budget_count=1),
    )
    await env.harness.deliver(poke_labels("api"))
    [first] = await env.harness.runs()
    assert first.outcome is RunOutcome.AWAITING_APPROVAL, first
    assert peer.value == 1  # the first step acted
    approval = await env.desk.store.latest_approval(first.id, 1)
    assert approval is not None
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.guards.pause(None, "change freeze", by="bob")
    await env.harness.drain()
    ended = await env.harness.store.get_run(first.id)
    assert ended is not None
    assert ended.outcome is RunOutcome.REFUSED, ended
    assert [(s.idx, s.outcome) for s in ended.steps] == [(0, "ok"), (1, "not_run")]
    assert peer.value == 1
    assert await budget_slots(env) == [first.id]
