"""A held step whose preview changes nothing, through the pipeline: nobody is asked to approve it,
it is recorded a noop at once, and the steps after it run (or are held for their own approval), in a
run and in an undo; a pause set meanwhile still stops them. Real PostgreSQL and Redis, with a real
HTTP peer: the step is a counter on a local server (``tests.support.approvals``), so "it ran once"
is counted there."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from receiver.approvals.state import Decision
from receiver.guards.redis_guards import Guards
from receiver.model import RunOutcome
from remediations.base import ActionContext, Change
from remediations.targets import Target
from tests.support.approval_deciders import ALICE, API, UP_TO_ONE
from tests.support.approvals import (
    POKE_RULE_HEAD,
    POKE_RULES,
    MakeApprovalEnv,
    Peer,
    Poke,
    poke_labels,
)


async def test_a_held_step_whose_preview_changes_nothing_asks_nobody(
    approval_env: MakeApprovalEnv,
) -> None:
    # The change is in place before anyone is asked (a limit at its cap already, a pod gone):
    # the preview's before is its after. An engineer was asked to approve nothing, and the
    # run sat in awaiting_approval until they did, or expired with it. It is recorded a noop
    # at once, no approval asked; nothing is run for it.
    env = await approval_env(rules=POKE_RULES.replace("- action: test.poke", UP_TO_ONE))
    env.peer.value = 1
    await env.harness.deliver(poke_labels())

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED, done.error
    assert [(s.outcome, s.before, s.after) for s in done.steps] == [
        ("noop", {"value": 1}, {"value": 1})
    ]
    assert "nobody was asked to approve it" in done.steps[0].message
    assert await env.desk.store.latest_approval(done.id, 0) is None
    assert "approval.requested" not in env.peer.kinds()
    assert env.peer.pokes == 0


# A held step already in place (the counter at 1), then a step that acts: held for its own
# approval, or (``+ NO_APPROVAL``) without one.
NOOP_THEN = POKE_RULES.replace("- action: test.poke", UP_TO_ONE) + (
    "      - action: test.poke\n        params: {up_to: 3}\n"
)


NO_APPROVAL = "        approval: never\n"


async def test_a_held_step_that_changes_nothing_lets_the_steps_after_it_run(
    approval_env: MakeApprovalEnv,
) -> None:
    # The held first step's preview changes nothing; the step after it needs no approval.
    # The first was put to an engineer (approving nothing was what let the second run), and
    # the run waited in awaiting_approval. It is a noop at once, and the second step runs.
    env = await approval_env(rules=NOOP_THEN + NO_APPROVAL)
    env.peer.value = 1
    await env.harness.deliver(poke_labels())

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED, done.error
    assert [(s.outcome, s.before, s.after) for s in done.steps] == [
        ("noop", {"value": 1}, {"value": 1}),
        ("ok", {"value": 1}, {"value": 2}),
    ]
    assert "nobody was asked to approve it" in done.steps[0].message
    assert await env.desk.store.latest_approval(done.id, 0) is None
    assert "approval.requested" not in env.peer.kinds()
    assert env.peer.pokes == 1


async def test_the_step_after_a_held_noop_is_held_for_its_own_approval(
    approval_env: MakeApprovalEnv,
) -> None:
    # The step after the held noop needs an approval of its own: it is the one asked for,
    # and it runs once approved; nobody is asked about the first.
    env = await approval_env(rules=NOOP_THEN)
    env.peer.value = 1
    await env.harness.deliver(poke_labels())

    run = await env.harness.only_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL, run.error
    assert [s.outcome for s in run.steps] == ["noop", "awaiting_approval"]
    assert await env.desk.store.latest_approval(run.id, 0) is None
    approval = await env.desk.store.latest_approval(run.id, 1)
    assert approval is not None
    assert approval.plan["before"] == {"value": 1}
    assert env.peer.kinds().count("approval.requested") == 1

    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED, done.error
    assert [(s.outcome, s.after) for s in done.steps] == [
        ("noop", {"value": 1}),
        ("ok", {"value": 2}),
    ]
    assert env.peer.pokes == 1


async def test_an_undo_goes_on_past_a_held_step_that_changes_nothing(
    approval_env: MakeApprovalEnv,
) -> None:
    # The same in an undo (its own stage list): the held on_resolved step is in place
    # already, and the one after it, needing no approval, runs once the alert resolved.
    rules = POKE_RULE_HEAD + (
        "    steps:\n"
        "      - action: test.poke\n"
        "        approval: never\n"
        "    on_resolved:\n"
        "      - action: test.poke\n"
        "        params: {up_to: 1}\n"
        "      - action: test.poke\n"
        "        params: {up_to: 3}\n"
        "        approval: never\n"
    )
    env = await approval_env(rules=rules)
    await env.harness.deliver(poke_labels())
    await env.harness.deliver(poke_labels(), status="resolved")

    done = await env.harness.only_run()
    undo = [(s.outcome, s.after) for s in done.steps if s.phase == "resolve"]
    assert undo == [("noop", {"value": 1}), ("ok", {"value": 2})], done.steps
    assert "approval.requested" not in env.peer.kinds()
    assert env.peer.pokes == 2  # the run's own step, and the undo's second


class FreezingPoke(Poke):
    """``test.poke`` whose preview also sets the kill switch: a change freeze that begins
    while the held step is looked at."""

    name: ClassVar[str] = "test.freezing_poke"
    guards: Guards | None = None

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        change = await super().preview(ctx, target, params)
        assert self.guards is not None
        await self.guards.pause(None, "change freeze")
        return change


async def test_a_pause_set_while_a_held_noop_was_looked_at_stops_the_steps_after_it(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # The kill switch is asked again before a step that follows one this pass settled, as
    # before any step after a run's first: the freeze refuses the next step, nothing acts.
    freezing = FreezingPoke(peer.url)
    rules = NOOP_THEN.replace("action: test.poke\n", "action: test.freezing_poke\n", 1)
    env = await approval_env(rules=rules + NO_APPROVAL, actions=[freezing])
    freezing.guards = env.harness.guards
    env.peer.value = 1
    await env.harness.deliver(poke_labels())

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.REFUSED, done.error
    assert [s.outcome for s in done.steps] == ["noop", "refused"]
    assert "pause" in (done.steps[1].message or "")
    assert env.peer.pokes == 0
