"""The kill switch stops a run's later steps: a pause set while an admitted run's first step
acts refuses the steps after it (one Redis call before each); a follow-up's (an undo's) are
held until it ends, as at their admission; and a pause that cannot be checked runs nothing more
until it can (fail closed). Before, only new runs were refused: the second step of a run
admitted a moment before the pause still acted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from receiver.model import RunOutcome
from remediations.base import ActionContext, Change, Outcome, Result, Risk
from remediations.targets import Target
from tests.support.approvals import POKE_RULE_HEAD, MakeApprovalEnv, poke_labels
from tests.support.payloads import alert, notification
from tests.support.polling import eventually
from tests.support.redis import RedisServer

RULES = (
    POKE_RULE_HEAD
    + """    steps:
      - action: test.hook
      - action: test.poke
        approval: never
"""
)


class HookParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hook:
    """``test.hook``: a low-risk step that calls ``hook`` as it acts (the operator pauses)."""

    name: ClassVar[str] = "test.hook"
    Params: ClassVar[type[BaseModel]] = HookParams
    risk: ClassVar[Risk] = Risk.LOW
    disruptive: ClassVar[bool] = False
    replay_safe: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment"})

    def __init__(self) -> None:
        self.hook: Callable[[], Awaitable[Any]] | None = None

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset()

    def describe(self, target: Target, params: BaseModel) -> str:
        return "call the hook"

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        return Change("call the hook", {}, {"called": True}, {})

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        if self.hook is not None:
            await self.hook()
        return Result(Outcome.OK, "hook called", {"called": False}, {"called": True})


async def test_a_pause_set_during_a_step_refuses_the_steps_after_it(
    approval_env: MakeApprovalEnv,
) -> None:
    hook = Hook()
    env = await approval_env(rules=RULES, actions=[hook])
    hook.hook = lambda: env.harness.guards.pause(None, "stop now", by="alice")
    await env.harness.deliver(poke_labels())
    run = await env.harness.store.get_run((await env.harness.runs())[0].id)
    assert run is not None
    assert env.peer.pokes == 0
    assert run.outcome is RunOutcome.REFUSED
    steps = {s.action: s for s in run.steps}
    assert steps["test.hook"].outcome == "ok"
    assert steps["test.poke"].outcome == "refused"
    assert "stop now" in steps["test.poke"].message


async def test_a_pause_that_cannot_be_checked_between_steps_holds_the_rest_until_it_can(
    approval_env: MakeApprovalEnv, redis_controlled: RedisServer
) -> None:
    """Fail closed, as at admission: Redis goes away while the first step acts, so the pause
    cannot be asked before the second; it does not run then, and the run is taken up once
    Redis answers, the second step running once."""
    hook = Hook()
    env = await approval_env(rules=RULES, actions=[hook])
    h = env.harness

    async def redis_goes_away() -> None:
        redis_controlled.stop()

    hook.hook = redis_goes_away
    try:
        await h.intake.accept(notification(alert(poke_labels())))
        await h.drain()
        run = await h.only_run()
        assert env.peer.pokes == 0
        assert run.outcome is RunOutcome.RUNNING
        assert {s.action: s.outcome for s in run.steps} == {
            "test.hook": "ok",
            "test.poke": "pending",
        }
    finally:
        redis_controlled.start()
    hook.hook = None
    async with h.store._pool.acquire() as conn:
        await conn.execute("UPDATE alert_events SET not_before = now() WHERE state = 'pending'")
    await h.drain()
    run = await h.only_run()
    assert env.peer.pokes == 1
    assert run.outcome is RunOutcome.SUCCEEDED
    assert {s.action: s.outcome for s in run.steps} == {"test.hook": "ok", "test.poke": "ok"}


UNDO_RULES = (
    POKE_RULE_HEAD
    + """    steps:
      - action: test.hook
    on_resolved:
      - action: test.hook
      - action: test.poke
        approval: never
"""
)


async def test_a_pause_set_during_an_undo_step_holds_the_steps_after_it_until_it_ends(
    approval_env: MakeApprovalEnv,
) -> None:
    """A follow-up's steps are held by a pause at their admission, not refused: so are those
    after a step the pause came during, and a job carries them out once it is lifted."""
    hook = Hook()
    env = await approval_env(rules=UNDO_RULES, actions=[hook])
    h = env.harness
    await h.deliver(poke_labels())
    hook.hook = lambda: h.guards.pause(None, "stop now", by="alice")
    await h.deliver(poke_labels(), status="resolved")
    hook.hook = None
    run = await h.only_run()
    undo = {s.action: s for s in run.steps if s.phase == "resolve"}
    assert env.peer.pokes == 0
    assert undo["test.hook"].outcome == "ok"
    assert undo["test.poke"].outcome == "pending"
    assert "held by the pause guard: automation paused: stop now" in undo["test.poke"].message

    await h.guards.resume()
    async with h.store._pool.acquire() as conn:
        await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    await h.drain()
    run = await h.only_run()
    undo = {s.action: s for s in run.steps if s.phase == "resolve"}
    assert env.peer.pokes == 1
    assert (undo["test.hook"].outcome, undo["test.poke"].outcome) == ("ok", "ok")


LADDER_RULES = (
    POKE_RULE_HEAD
    + """    steps:
      - action: test.hook
    verify: {resolved_within: 1s}
    on_failed:
      - action: test.hook
      - action: test.poke
        approval: never
"""
)


async def test_a_pause_set_during_an_escalation_step_holds_the_steps_after_it_until_it_ends(
    approval_env: MakeApprovalEnv,
) -> None:
    hook = Hook()
    env = await approval_env(rules=LADDER_RULES, actions=[hook])
    h = env.harness
    await h.deliver(poke_labels())
    hook.hook = lambda: h.guards.pause(None, "stop now", by="alice")

    async def escalation() -> dict[str, Any]:
        await h.drain()
        run = await h.only_run()
        return {s.action: s for s in run.steps if s.phase == "on_failed"}

    held = await eventually(
        escalation,
        lambda steps: (
            "held by the pause guard" in (getattr(steps.get("test.poke"), "message", None) or "")
        ),
    )
    hook.hook = None
    assert env.peer.pokes == 0
    assert (held["test.hook"].outcome, held["test.poke"].outcome) == ("ok", "pending")

    await h.guards.resume()
    run = await h.only_run()
    async with h.store._pool.acquire() as conn:
        await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    done = await eventually(escalation, lambda steps: steps["test.poke"].outcome == "ok")
    assert env.peer.pokes == 1
    assert done["test.hook"].outcome == "ok"
