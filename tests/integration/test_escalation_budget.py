"""The global budget slot of an escalation that ends before any of its steps acted.

The budget window holds run ids: an escalation (``on_failed``) is admitted under its run's id,
so within the window it shares the slot its run drew (and that run acted: the slot stays
spent). Escalating after the run's slot left the window, it draws one of its own. Ended with
nothing of it acted (its step's approval rejected or expired, or the escalation refused for
good when taken up again: the namespace policy changed by a restart while its step waited for
its approval, or the alert resolved before its approved step was taken up), that slot was
kept: an hour of the budget spent on a change that never happened, as an ignored approval's
was before receiver/pipeline/budget.py. A ladder step that runs dry draws none.

Against a real PostgreSQL and Redis; the guards' clock is the test's, so that the run's slot
can leave the window without waiting an hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.guards.policy import GuardSettings
from receiver.model import NamespacePolicy, RunOutcome
from receiver.store import JobKind, RunRecord
from remediations.targets import Target
from tests.support.approvals import (
    ApprovalEnv,
    DisruptivePoke,
    MakeApprovalEnv,
    Peer,
    poke_labels,
)
from tests.support.payloads import alert, notification
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")
HOUR = 3600.0
LADDER = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.disruptive_poke
        approval: never
    verify: {resolved_within: 1s}
    on_failed:
      - action: test.disruptive_poke
        approval: required
"""


class DryPoke(DisruptivePoke):
    """``test.disruptive_poke`` whose system (a Kubernetes client) the service lacks: it runs
    dry, changing nothing."""

    name: ClassVar[str] = "test.dry_poke"

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset({"kubernetes"})


DRY_LADDER = LADDER.replace(
    """    on_failed:
      - action: test.disruptive_poke
        approval: required""",
    """    on_failed:
      - action: test.dry_poke
        approval: never""",
)


class Clock:
    """The guards' clock: real time plus what the test moves it on by."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


async def _env(
    approval_env: MakeApprovalEnv, peer: Peer, clock: Clock, policy: NamespacePolicy | None = None
) -> ApprovalEnv:
    return await approval_env(
        rules=LADDER,
        actions=[DisruptivePoke(peer.url)],
        guard_settings=GuardSettings(budget_count=1, budget_window_s=HOUR),
        guard_clock=clock,
        namespaces=policy,
    )


async def _slots(env: ApprovalEnv) -> dict[str, float]:
    """The budget window: each run id with its score (when its slot was drawn, ms)."""
    guards = env.harness.guards
    members = await guards._redis.zrange(guards.keys.budget(), 0, -1)
    slots: dict[str, float] = {}
    for member in members:
        name = member.decode() if isinstance(member, bytes) else str(member)
        score = await guards._redis.zscore(guards.keys.budget(), name)
        assert score is not None  # read just now; nothing else writes the window here
        slots[name] = score
    return slots


async def _escalated(env: ApprovalEnv, clock: Clock, later: timedelta) -> RunRecord:
    """Deliver a Poke alert (its step acts), move the guards' clock on by ``later``, and wait
    for the failed verification's ladder to park at its step's approval."""
    await env.harness.deliver(poke_labels())
    clock.ahead += later

    async def probe() -> RunRecord:
        await env.harness.drain()
        return await env.harness.only_run()

    def waiting(run: RunRecord) -> bool:
        return any(s.phase == "on_failed" and s.outcome == "awaiting_approval" for s in run.steps)

    return await eventually(probe, waiting, what="the ladder waits")


async def _approved_then_refused_for_good(
    approval_env: MakeApprovalEnv, peer: Peer, clock: Clock, env: ApprovalEnv, run: RunRecord
) -> RunRecord:
    """Approve the ladder's step, then take it up on a service restarted with a namespace
    policy that now denies the target's namespace: refused for good, nothing of it acted."""
    held = next(s for s in run.steps if s.phase == "on_failed")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    restarted = await _env(approval_env, peer, clock, NamespacePolicy(deny=("shop",)))
    await restarted.harness.drain()
    ended = await restarted.harness.only_run()
    assert [(s.phase, s.outcome) for s in ended.steps] == [("run", "ok"), ("on_failed", "refused")]
    assert ended.outcome is RunOutcome.FAILED
    assert peer.value == 1  # only the run's own step acted
    return ended


async def test_an_escalation_refused_for_good_gives_back_the_slot_it_drew(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    clock = Clock()
    env = await _env(approval_env, peer, clock)
    # Escalating more than the window after the run was admitted: the run's slot has left
    # the window, and the escalation's admission draws one of its own.
    run = await _escalated(env, clock, timedelta(seconds=HOUR + 60))
    slots = await _slots(env)
    assert list(slots) == [run.id]
    assert slots[run.id] >= (clock() - timedelta(seconds=60)).timestamp() * 1000  # just drawn
    await _approved_then_refused_for_good(approval_env, peer, clock, env, run)
    assert await _slots(env) == {}


async def test_an_escalation_within_its_runs_window_keeps_the_runs_slot(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """Within the window the escalation shares the slot its run drew, and the run acted: the
    refusal of the escalation leaves that slot spent."""
    clock = Clock()
    env = await _env(approval_env, peer, clock)
    run = await _escalated(env, clock, timedelta())
    before = await _slots(env)
    assert list(before) == [run.id]
    await _approved_then_refused_for_good(approval_env, peer, clock, env, run)
    assert await _slots(env) == before


async def _approval_ends(env: ApprovalEnv, run: RunRecord, how: str) -> RunRecord:
    """End the ladder's pending approval: ``rejected`` by alice, ``expired`` (its expiry job
    and the approval moved into the past), or ``cancelled`` (the alert resolved)."""
    held = next(s for s in run.steps if s.phase == "on_failed")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    if how == "rejected":
        await env.desk.decide(approval.id, Decision.REJECT, ALICE, API, reason="not now")
    elif how == "cancelled":
        await env.harness.deliver(poke_labels(), status="resolved")
    else:
        async with env.harness.store._tx() as conn:
            await conn.execute(
                "UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
                approval.id,
            )
            await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    await env.harness.drain()
    ended = await env.harness.only_run()
    assert [(s.phase, s.outcome) for s in ended.steps] == [("run", "ok"), ("on_failed", how)]
    assert ended.outcome is RunOutcome.FAILED
    return ended


@pytest.mark.parametrize("how", ["rejected", "expired", "cancelled"])
async def test_an_escalation_ended_at_its_approval_gives_back_the_slot_it_drew(
    approval_env: MakeApprovalEnv, peer: Peer, how: str
) -> None:
    clock = Clock()
    env = await _env(approval_env, peer, clock)
    run = await _escalated(env, clock, timedelta(seconds=HOUR + 60))
    assert list(await _slots(env)) == [run.id]
    await _approval_ends(env, run, how)
    assert peer.value == 1  # only the run's own step acted
    assert await _slots(env) == {}


async def test_an_escalation_ended_at_its_approval_within_its_runs_window_keeps_the_runs_slot(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    clock = Clock()
    env = await _env(approval_env, peer, clock)
    run = await _escalated(env, clock, timedelta())
    before = await _slots(env)
    await _approval_ends(env, run, "rejected")
    assert await _slots(env) == before


async def test_an_escalation_that_runs_dry_draws_no_slot(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """A ladder step that runs dry (its system is missing) changes nothing: escalating after
    the run's slot left the window, its admission draws none. It drew one: the budget
    counted a change that never happened for an hour."""
    clock = Clock()
    env = await approval_env(
        rules=DRY_LADDER,
        actions=[DisruptivePoke(peer.url), DryPoke(peer.url)],
        guard_settings=GuardSettings(budget_count=1, budget_window_s=HOUR),
        guard_clock=clock,
    )
    await env.harness.deliver(poke_labels())
    drawn = await _slots(env)  # the run's own slot, drawn when its step was admitted
    clock.ahead += timedelta(seconds=HOUR + 60)

    async def probe() -> RunRecord:
        await env.harness.drain()
        return await env.harness.only_run()

    def escalated(run: RunRecord) -> bool:
        return any(s.phase == "on_failed" and s.outcome != "pending" for s in run.steps)

    run = await eventually(probe, escalated, what="the ladder ran")
    assert [(s.phase, s.outcome) for s in run.steps] == [("run", "ok"), ("on_failed", "dry_run")]
    assert peer.value == 1  # only the run's own step acted
    # The window still holds the run's slot as it was drawn, not one drawn again now, and
    # the escalation's admission says it drew none.
    assert list(drawn) == [run.id]
    assert await _slots(env) == drawn
    assert not await env.harness.store.follow_up_drew_budget(run.id, "on_failed")


@pytest.mark.parametrize("own", [True, False], ids=["drew-its-own", "within-the-runs-window"])
async def test_an_escalation_its_alerts_resolution_overtook_gives_back_the_slot_it_drew(
    approval_env: MakeApprovalEnv, peer: Peer, own: bool
) -> None:
    """The ladder's step was approved, and the alert resolved before a worker took the
    approval up: the step never runs (``Store.end_resolved_escalation``). The slot the
    escalation drew of its own was kept: an hour of the budget spent on nothing. One it
    shares with its run stays spent (the run acted)."""
    clock = Clock()
    env = await _env(approval_env, peer, clock)
    run = await _escalated(env, clock, timedelta(seconds=HOUR + 60 if own else 0))
    before = await _slots(env)
    assert list(before) == [run.id]
    held = next(s for s in run.steps if s.phase == "on_failed")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
    await env.harness.drain()
    ended = await env.harness.only_run()
    assert [(s.phase, s.outcome) for s in ended.steps] == [("run", "ok"), ("on_failed", "not_run")]
    assert ended.outcome is RunOutcome.FAILED
    assert peer.value == 1  # only the run's own step acted
    left = {} if own else before
    assert await _slots(env) == left
    # The ladder taken up again (a retried job) finds nothing left to end: nothing else moves.
    await env.harness.store.enqueue_job(JobKind.RESUME_RUN, run.id)
    await env.harness.drain()
    again = await env.harness.only_run()
    assert again.steps == ended.steps
    assert await _slots(env) == left
