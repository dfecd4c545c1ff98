"""An on_resolved step that waits for its approval is withdrawn when its alert fires again.

Approved later, it would take the remediation back while the alert fires again, and the new
run, planned while the change was still in place, changed nothing and has no undo of its own.
So the firing cancels its approval (the approver is told why, and a decision is refused), and
the undo is carried to the alert's next resolution, where its approval is asked for again.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): the step sets a
value on the peer, as ``kubernetes.set_env`` sets a variable.
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp
import pytest
from pydantic import BaseModel, ConfigDict

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin, UndoWithdrawn
from receiver.model import ApprovalRecord, ApprovalState
from receiver.store import WITHDRAWN, RunRecord
from remediations.base import ActionContext, Change, Outcome, Result, Risk
from remediations.targets import Target
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv, Peer, poke_labels
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
      - action: test.set
        params: {value: 5}
        approval: never
    on_resolved:
      - action: test.set
        params: {value: 20}
        approval: required
"""


class SetParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: int


class SetValue:
    """``test.set``: a high-risk step that sets the peer's value (a noop when it is so)."""

    name: ClassVar[str] = "test.set"
    Params: ClassVar[type[BaseModel]] = SetParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = False
    replay_safe: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment"})

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset({"http"})

    def describe(self, target: Target, params: BaseModel) -> str:
        return f"set {target.key} to {getattr(params, 'value', None)}"

    async def _value(self, ctx: ActionContext) -> int:
        session: aiohttp.ClientSession = ctx.clients.get("http")
        async with session.get(f"{self.base_url}/state") as response:
            return int((await response.json())["value"])

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        value, wanted = await self._value(ctx), getattr(params, "value", 0)
        return Change(f"set {value} -> {wanted}", {"value": value}, {"value": wanted}, {})

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        value, wanted = await self._value(ctx), getattr(params, "value", 0)
        if value == wanted:
            return Result(Outcome.NOOP, f"{wanted} already", {"value": value}, {"value": value})
        session: aiohttp.ClientSession = ctx.clients.get("http")
        async with session.post(f"{self.base_url}/set", json={"value": wanted}) as response:
            after = int((await response.json())["value"])
        return Result(Outcome.OK, f"set {value} -> {after}", {"value": value}, {"value": after})


async def send(env: ApprovalEnv, status: str, starts: str, ends: str | None = None) -> None:
    await env.harness.intake.accept(
        notification(alert(poke_labels(), status=status, starts_at=starts, ends_at=ends))
    )
    await env.harness.drain()
    assert await env.harness.store.queue_depth() == 0


async def runs_in_order(env: ApprovalEnv) -> list[RunRecord]:
    rows = sorted(await env.harness.runs(), key=lambda r: r.created_at)
    runs = [await env.harness.store.get_run(r.id) for r in rows]
    assert all(r is not None for r in runs)
    return [r for r in runs if r is not None]


def phases(run: RunRecord) -> list[tuple[int, str, str]]:
    return [(s.idx, s.phase, s.outcome) for s in run.steps]


async def held_approval(env: ApprovalEnv, run: RunRecord) -> ApprovalRecord:
    held = [s for s in run.steps if s.phase == "resolve" and s.outcome == "awaiting_approval"]
    assert len(held) == 1, phases(run)
    approval = await env.desk.store.latest_approval(run.id, held[0].idx)
    assert approval is not None
    assert approval.state is ApprovalState.PENDING
    return approval


async def test_a_new_episode_withdraws_the_held_undo_and_its_resolution_carries_it(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    peer.value = 20
    env = await approval_env(rules=RULES, actions=[SetValue(peer.url)])
    await send(env, "firing", "2026-11-25T10:00:00Z")
    assert peer.value == 5
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    [first] = await runs_in_order(env)
    old = await held_approval(env, first)
    assert peer.value == 5  # the undo waits for its approval

    # The alert fires again (a new episode) while the undo waits.
    await send(env, "firing", "2026-11-25T10:10:00Z")
    first, second = await runs_in_order(env)
    assert phases(second) == [(0, "run", "noop")]  # the change is still in place
    assert phases(first) == [(0, "run", "ok"), (1, "resolve", "not_run")]
    assert WITHDRAWN in first.steps[1].message
    assert first.undo_deferred
    withdrawn = await env.desk.store.get_approval(old.id)
    assert withdrawn is not None
    assert withdrawn.state is ApprovalState.CANCELLED
    assert withdrawn.reason == WITHDRAWN
    # The approver is told why.
    cancelled = [n for n in peer.notices if n.get("kind") == "approval.cancelled"]
    assert len(cancelled) == 1
    assert "fired again" in str(cancelled[0])

    # A decision arriving now is refused, saying why, and nothing is undone.
    with pytest.raises(UndoWithdrawn, match="the alert fired again"):
        await env.desk.decide(old.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    assert peer.value == 5

    # The new episode resolves: the carried undo asks for its approval again.
    await send(env, "resolved", "2026-11-25T10:10:00Z", "2026-11-25T10:15:00Z")
    assert peer.value == 5
    first, second = await runs_in_order(env)
    assert [p for p in phases(second) if p[1] == "resolve"] == []
    assert not first.undo_deferred
    assert phases(first) == [
        (0, "run", "ok"),
        (1, "resolve", "not_run"),
        (2, "resolve", "awaiting_approval"),
    ]
    carried = await held_approval(env, first)
    assert carried.id != old.id

    await env.desk.decide(carried.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    assert peer.value == 20
    assert peer.sets == 2  # the remediation, and its undo once
    [first, _] = await runs_in_order(env)
    assert phases(first)[-1] == (2, "resolve", "ok")


PARTLY = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.set
        params: {value: 5}
        approval: never
    on_resolved:
      - action: notify
        params: {channel: ops, title: "undo begins", message: "taking the value back"}
      - action: test.set
        params: {value: 20}
        approval: required
"""


async def test_a_carried_undo_leaves_out_the_steps_its_first_pass_did(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # The undo's first step ran at the first resolution; only the held step is withdrawn, and
    # the carried undo must not send the first step again.
    peer.value = 20
    env = await approval_env(rules=PARTLY, actions=[SetValue(peer.url)])

    def undo_notices() -> int:
        return sum("undo begins" in str(n) for n in peer.notices)

    await send(env, "firing", "2026-11-25T10:00:00Z")
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    [first] = await runs_in_order(env)
    assert [p[1:] for p in phases(first)] == [
        ("run", "ok"),
        ("resolve", "ok"),
        ("resolve", "awaiting_approval"),
    ]
    assert undo_notices() == 1

    await send(env, "firing", "2026-11-25T10:10:00Z")  # withdraws the held step
    await send(env, "resolved", "2026-11-25T10:10:00Z", "2026-11-25T10:15:00Z")
    first, _ = await runs_in_order(env)
    assert [p[1:] for p in phases(first)] == [
        ("run", "ok"),
        ("resolve", "ok"),
        ("resolve", "not_run"),
        ("resolve", "awaiting_approval"),
    ]
    assert first.steps[-1].action == "test.set"
    assert undo_notices() == 1

    carried = await held_approval(env, first)
    await env.desk.decide(carried.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    assert peer.value == 20
    assert undo_notices() == 1
