"""The kill switch stops a run's later steps: a pause set while an admitted run's first step
acts refuses the steps after it (one Redis call before each), and a pause that cannot be
checked refuses them too (fail closed). Before, only new runs were refused: the second step
of a run admitted a moment before the pause still acted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from receiver.guards.policy import GuardUnavailable
from receiver.model import RunOutcome
from remediations.base import ActionContext, Change, Outcome, Result, Risk
from remediations.targets import Target
from tests.support.approvals import MakeApprovalEnv, poke_labels

RULES = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.hook
      - action: test.poke
        approval: never
"""


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


async def test_a_pause_that_cannot_be_checked_between_steps_refuses_them(
    approval_env: MakeApprovalEnv,
) -> None:
    hook = Hook()
    env = await approval_env(rules=RULES, actions=[hook])
    guards = env.harness.guards
    real_admit = guards.admit

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise GuardUnavailable("redis unavailable during admit: ConnectionError()")

    async def redis_goes_away() -> None:
        guards.admit = down  # type: ignore[method-assign]

    hook.hook = redis_goes_away
    try:
        await env.harness.deliver(poke_labels())
    finally:
        guards.admit = real_admit  # type: ignore[method-assign]
    run = await env.harness.store.get_run((await env.harness.runs())[0].id)
    assert run is not None
    assert env.peer.pokes == 0
    poke = next(s for s in run.steps if s.action == "test.poke")
    assert poke.outcome == "refused"
    assert "could not be checked" in poke.message
