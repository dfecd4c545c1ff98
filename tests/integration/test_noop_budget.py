"""The global budget slot of a run whose disruptive steps all ended ``noop``.

A run with a disruptive step draws a budget slot when it is admitted. A held step whose
preview changes nothing is recorded ``noop`` without its action being called (nobody is
asked to approve nothing: receiver/pipeline/approve.py); a run whose steps all ended so kept
its slot for the hour all the same, so a storm of rollbacks already in place spent the budget
on nothing and refused real work after it. It now gives the slot back
(``BudgetRefund.steps_done``); a run one of whose steps acted keeps it.

Against a real PostgreSQL and Redis, with the step a counter on a local HTTP server.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import structlog
from pydantic import BaseModel

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.guards.policy import GuardSettings
from receiver.model import RunOutcome, Target
from receiver.pipeline.budget import BudgetRefund
from receiver.store import RunRecord
from remediations.base import ActionContext, ActionRefused, Outcome, Result
from remediations.registry import default_registry
from tests.support.approvals import (
    POKE_RULE_HEAD,
    ApprovalEnv,
    MakeApprovalEnv,
    Peer,
    Poke,
    poke_labels,
)
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")
HOUR = 3600.0
# A disruptive step held for its approval (high risk) that changes nothing once the counter
# is at 1.
HELD_UP_TO_ONE = POKE_RULE_HEAD + (
    "    steps:\n      - action: test.disruptive_poke\n        params: {up_to: 1}\n"
)
# The same run, verified within a second (the alert never resolves): its escalation follows.
ESCALATED = HELD_UP_TO_ONE + "    verify: {resolved_within: 1s}\n    on_failed:\n"


class DisruptivePoke(Poke):
    """``test.poke`` that draws on the global budget, as a rollback does."""

    name: ClassVar[str] = "test.disruptive_poke"
    disruptive: ClassVar[bool] = True


class RefusedPoke(Poke):
    """``test.disruptive_poke`` whose precondition always says no, without acting."""

    name: ClassVar[str] = "test.refused_poke"
    disruptive: ClassVar[bool] = True

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        raise ActionRefused("the target is managed by hand")


class FoundInPlacePoke(Poke):
    """``test.disruptive_poke`` whose preview offers a change and whose action, once approved,
    finds it in place (done by hand meanwhile, say): ``noop``, without acting."""

    name: ClassVar[str] = "test.in_place_poke"
    disruptive: ClassVar[bool] = True

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        return Result(Outcome.NOOP, "found in place")


async def _env(approval_env: MakeApprovalEnv, peer: Peer, rules: str) -> ApprovalEnv:
    """One slot in the budget's window: a slot kept for nothing refuses the next run."""
    return await approval_env(
        rules=rules,
        actions=[DisruptivePoke(peer.url), RefusedPoke(peer.url), FoundInPlacePoke(peer.url)],
        guard_settings=GuardSettings(budget_count=1, budget_window_s=HOUR),
    )


async def _delivered(
    approval_env: MakeApprovalEnv, peer: Peer, rules: str
) -> tuple[ApprovalEnv, RunRecord]:
    """``_env`` with the counter at 1 (a held step up to 1 changes nothing) and one Poke
    alert delivered: the env and the harness's only run as the delivery left it."""
    env = await _env(approval_env, peer, rules)
    peer.value = 1
    await env.harness.deliver(poke_labels())
    return env, await env.harness.only_run()


async def _slots(env: ApprovalEnv) -> list[str]:
    """The run ids in the budget's window."""
    guards = env.harness.guards
    members = await guards._redis.zrange(guards.keys.budget(), 0, -1)
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


async def test_a_run_whose_held_step_changes_nothing_gives_its_slot_back(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env, noop = await _delivered(approval_env, peer, HELD_UP_TO_ONE)
    assert noop.outcome is RunOutcome.SUCCEEDED, noop.error
    assert [s.outcome for s in noop.steps] == ["noop"]
    assert await _slots(env) == []

    # The one slot is there for a change: the next run, which acts, is admitted and asks.
    peer.value = 0
    await env.harness.deliver(poke_labels("web"))
    runs = {r.id: r for r in await env.harness.runs()}
    (real,) = [r for r in runs.values() if r.id != noop.id]
    assert real.outcome is RunOutcome.AWAITING_APPROVAL, real.error
    assert await _slots(env) == [real.id]

    # Given back once: the refund asked again for the noop run takes nobody else's slot.
    registry = default_registry()
    registry.register(DisruptivePoke(peer.url))
    refund = BudgetRefund(env.harness.store, env.harness.guards, registry)
    await refund.steps_done(noop.id, RunOutcome.SUCCEEDED, structlog.get_logger("test"))
    assert await _slots(env) == [real.id]
    assert peer.pokes == 0


async def test_an_approved_step_found_in_place_gives_the_slot_back(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # Approved, then found done before it ran (by hand, or just before a crash): the step's
    # own run answers noop, which the refund's rule counts as no change.
    env = await _env(approval_env, peer, HELD_UP_TO_ONE)
    run, approval = await env.pending_run()
    assert await _slots(env) == [run.id]
    peer.value = 1
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED, done.error
    assert [s.outcome for s in done.steps] == ["noop"]
    assert await _slots(env) == []
    assert peer.pokes == 0


async def test_a_run_with_a_step_that_acted_after_a_held_noop_keeps_its_slot(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    rules = HELD_UP_TO_ONE + (
        "      - action: test.disruptive_poke\n        params: {up_to: 3}\n"
        "        approval: never\n"
    )
    env, done = await _delivered(approval_env, peer, rules)
    assert done.outcome is RunOutcome.SUCCEEDED, done.error
    assert [s.outcome for s in done.steps] == ["noop", "ok"]
    assert await _slots(env) == [done.id]


async def test_the_escalation_of_a_run_that_changed_nothing_draws_and_gives_back_its_own(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # The run gave its slot back before its outcome was written, so the escalation after its
    # failed verification finds no slot of the run's to share: it draws its own, and gives
    # it back when its approval is rejected, nothing of it having acted.
    rules = ESCALATED + ("      - action: test.disruptive_poke\n        approval: required\n")
    env = await _env(approval_env, peer, rules)
    peer.value = 1
    run, approval = await env.escalated()
    assert [(s.phase, s.outcome) for s in run.steps] == [
        ("run", "noop"),
        ("on_failed", "awaiting_approval"),
    ]
    assert await env.harness.store.follow_up_drew_budget(run.id, "on_failed")
    assert await _slots(env) == [run.id]

    await env.desk.decide(approval.id, Decision.REJECT, ALICE, API, reason="not now")
    await env.harness.drain()
    assert await _slots(env) == []
    assert peer.pokes == 0


async def test_a_run_refused_by_a_step_after_a_held_noop_gives_its_slot_back(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # The held step changed nothing, the next one's precondition refused it: no step acted,
    # and the run, ended refused, kept its slot for the hour before.
    rules = HELD_UP_TO_ONE + (
        "      - action: test.refused_poke\n        approval: never\n"
        "      - action: test.disruptive_poke\n        approval: never\n"
    )
    env, done = await _delivered(approval_env, peer, rules)
    assert done.outcome is RunOutcome.REFUSED, done.error
    assert [s.outcome for s in done.steps] == ["noop", "refused", "not_run"]
    assert await _slots(env) == []
    assert peer.pokes == 0


async def test_an_escalation_whose_steps_change_nothing_gives_its_own_slot_back(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # The run gave its slot back (noop), so its escalation draws one of its own; its held
    # step's preview changes nothing too, recorded noop without anyone asked: the ladder
    # ends with nothing changed, and kept that slot for the hour before.
    rules = ESCALATED + (
        "      - action: test.disruptive_poke\n"
        "        params: {up_to: 1}\n"
        "        approval: required\n"
    )
    env, _ = await _delivered(approval_env, peer, rules)

    def ladder_done(run: RunRecord) -> bool:
        return any(s.phase == "on_failed" and s.outcome == "noop" for s in run.steps)

    run = await env.only_run_once(ladder_done, "the ladder ends")
    assert [(s.phase, s.outcome) for s in run.steps] == [("run", "noop"), ("on_failed", "noop")]
    assert await env.harness.store.follow_up_drew_budget(run.id, "on_failed")
    assert await _slots(env) == []
    assert peer.pokes == 0


async def test_an_escalation_one_of_whose_steps_acted_keeps_its_own_slot(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # A ladder one of whose steps acted keeps the slot it drew, whatever the others did.
    rules = ESCALATED + (
        "      - action: test.disruptive_poke\n"
        "        params: {up_to: 2}\n"
        "        approval: never\n"
        "      - action: test.disruptive_poke\n"
        "        params: {up_to: 2}\n"
        "        approval: never\n"
    )
    env, _ = await _delivered(approval_env, peer, rules)

    def ladder_done(run: RunRecord) -> bool:
        return [s.outcome for s in run.steps if s.phase == "on_failed"] == ["ok", "noop"]

    run = await env.only_run_once(ladder_done, "the ladder ends")
    assert await env.harness.store.follow_up_drew_budget(run.id, "on_failed")
    assert await _slots(env) == [run.id]
    assert peer.pokes == 1


async def test_an_escalation_that_acted_in_an_earlier_pass_keeps_its_own_slot(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """The ladder's first step acted; its second waited for its approval, and once approved
    found its change in place (``noop``). The pass that ends the ladder acted in nothing, but
    the ladder did, in the pass before: the slot it drew of its own stays spent
    (``BudgetRefund.follow_up_ended`` reads every pass's records, not this pass's results)."""
    rules = HELD_UP_TO_ONE + (
        "    verify: {resolved_within: 1s}\n"
        "    on_failed:\n"
        "      - action: test.disruptive_poke\n"
        "        params: {up_to: 2}\n"
        "        approval: never\n"
        "      - action: test.in_place_poke\n"
        "        approval: required\n"
    )
    env = await _env(approval_env, peer, rules)
    peer.value = 1
    await env.harness.deliver(poke_labels())

    async def probe() -> RunRecord:
        await env.harness.drain()
        return await env.harness.only_run()

    def ladder(run: RunRecord) -> list[str]:
        return [s.outcome for s in run.steps if s.phase == "on_failed"]

    run = await eventually(
        probe, lambda r: ladder(r) == ["ok", "awaiting_approval"], what="it waits"
    )
    # The run changed nothing and gave its slot back; the escalation drew one of its own.
    assert [s.outcome for s in run.steps if s.phase == "run"] == ["noop"]
    assert await env.harness.store.follow_up_drew_budget(run.id, "on_failed")
    assert await _slots(env) == [run.id]

    held = next(s for s in run.steps if s.phase == "on_failed" and s.outcome != "ok")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    done = await env.harness.only_run()
    assert ladder(done) == ["ok", "noop"], done.steps
    assert await _slots(env) == [run.id]
    assert peer.pokes == 1
