"""A run whose worker died in its step and whose firing event then went dead (nothing left to
take the run up) ends ``cancelled`` once its alert resolves: it never stays ``running``. Its
budget slot is given back when nothing of the step ran (with no approval desk configured too,
through the desk's hook otherwise), and kept when the step may have acted: nothing written
before a replay-safe step's call says the call was not made.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): every poke is
counted by the peer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import ClassVar

import aiohttp
import pytest
from pydantic import BaseModel

from receiver.guards.policy import GuardSettings
from receiver.model import RunOutcome
from receiver.store import EventLease
from remediations.base import ActionContext, Result
from remediations.targets import Target
from tests.support.approvals import (
    POKE_RULE_HEAD,
    MakeApprovalEnv,
    Peer,
    Poke,
    poke_labels,
)
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.resolved_runs import WorkerDied, _resolve

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class DiesActing(Poke):
    """``test.poke`` that must not act twice (so a worker marks it started first) and whose
    worker dies while it acts."""

    name: ClassVar[str] = "test.dies_acting"
    replay_safe: ClassVar[bool] = False

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        raise WorkerDied


class DiesStarting(Poke):
    """``test.poke`` that draws on the global budget and must not act twice, whose worker
    dies as its step is about to be marked started: nothing of it ran."""

    name: ClassVar[str] = "test.dies_starting"
    disruptive: ClassVar[bool] = True
    replay_safe: ClassVar[bool] = False

    def describe(self, target: Target, params: BaseModel) -> str:
        raise WorkerDied


class PokesThenDies(Poke):
    """``test.poke`` that draws on the global budget and is replay-safe (as a restart is: no
    ``started`` mark), whose worker dies inside its call, once its poke has reached the peer."""

    name: ClassVar[str] = "test.pokes_then_dies"
    disruptive: ClassVar[bool] = True

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        await super().run(ctx, target, params)
        raise WorkerDied


async def test_a_run_left_running_by_its_dead_event_ends_once_its_alert_resolved(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """Its worker died while its step acted, and its firing event went dead (its failures
    used up): nothing was left to take the run up. The alert's resolution then closed it and
    left it ``running`` for good; now it queues a job that ends it."""
    rules = (
        POKE_RULE_HEAD + "    steps:\n      - action: test.dies_acting\n        approval: never\n"
    )
    env = await approval_env(rules=rules, actions=[DiesActing(peer.url)])
    store = env.harness.store
    await env.harness.intake.accept(notification(alert(poke_labels())))
    (claimed,) = await store.claim_events("replica-a", 1, 30.0)
    with pytest.raises(WorkerDied):
        await env.harness.pipeline(
            claimed.event, EventLease(claimed.event.id, "replica-a", claimed.attempts)
        )
    assert (
        await store.fail_event(
            claimed.event.id,
            "replica-a",
            claimed.attempts,
            "worker died",
            delay_s=0,
            max_failures=1,
        )
        == "dead"
    )
    assert (await env.harness.only_run()).outcome is RunOutcome.RUNNING

    await _resolve(env)
    run = await env.harness.only_run()
    assert run.resolved_at is not None
    assert run.outcome is RunOutcome.CANCELLED, run
    assert run.error == "not run: the alert resolved before the run's steps left ran"
    assert [s.outcome for s in run.steps] == ["interrupted"]
    # Only what is known: a result lost to a store outage leaves a step started too. It read
    # "a worker stopped while this step ran", a guess.
    assert run.steps[0].message.startswith(
        "this step's result was never recorded: its worker stopped, or the store was out of "
        "reach; it may have acted, in part or in full; not run again; "
    ), run.steps[0].message
    assert run.steps[0].message.endswith(run.error), run.steps[0].message
    assert await store.queue_depth() == 0


@contextlib.asynccontextmanager
async def _died_in_its_step(make_harness: MakeHarness, action: Poke) -> AsyncIterator[Harness]:
    """A harness (budget of one, not dry) whose run of one step of ``action``, never asking
    approval, was admitted and whose worker died in that step (``WorkerDied``), its event gone
    dead after one failure: what the resolution that comes next finds."""
    rules = POKE_RULE_HEAD + f"    steps:\n      - action: {action.name}\n        approval: never\n"
    async with aiohttp.ClientSession() as session:
        harness = await make_harness(
            rules,
            dry_run=False,
            extra_actions=[action],
            clients={"http": session},
            guard_settings=GuardSettings(budget_count=1),
        )
        store = harness.store
        await harness.intake.accept(notification(alert(poke_labels())))
        (claimed,) = await store.claim_events("replica-a", 1, 30.0)
        with pytest.raises(WorkerDied):
            await harness.pipeline(
                claimed.event, EventLease(claimed.event.id, "replica-a", claimed.attempts)
            )
        dead = await store.fail_event(
            claimed.event.id,
            "replica-a",
            claimed.attempts,
            "worker died",
            delay_s=0,
            max_failures=1,
        )
        assert dead == "dead"
        yield harness


async def test_a_run_whose_worker_died_before_its_step_gives_its_slot_back_without_approvals(
    make_harness: MakeHarness, peer: Peer
) -> None:
    """No approval desk is configured. The run was admitted (its budget slot taken) and its
    worker died before its step began; its event went dead, and the alert resolved: the run
    ended ``cancelled`` but kept the slot, given back only through the desk's hook."""
    async with _died_in_its_step(make_harness, DiesStarting(peer.url)) as harness:
        store = harness.store
        run = await harness.only_run()
        assert run.outcome is RunOutcome.RUNNING
        budget = harness.guards.keys.budget()
        assert await harness.guards._redis.zrange(budget, 0, -1) == [run.id.encode()]

        await harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
        await harness.drain()
        ended = await harness.only_run()
        assert ended.outcome is RunOutcome.CANCELLED, ended
        assert [s.outcome for s in ended.steps if s.outcome == "interrupted"] == []
        assert await harness.guards._redis.zrange(budget, 0, -1) == []
        assert peer.pokes == 0
        assert await store.queue_depth() == 0


async def test_a_run_whose_worker_died_inside_a_replay_safe_step_keeps_its_slot(
    make_harness: MakeHarness, peer: Peer
) -> None:
    """The run was admitted and its worker died inside a replay-safe step's call, which wrote
    no record (no ``started`` mark) but had poked its system. Its event went dead and the
    alert resolved: the run ended ``cancelled``, and the slot was given back as if its step
    had never run. Now it is kept: nothing written before the call says it was not made."""
    async with _died_in_its_step(make_harness, PokesThenDies(peer.url)) as harness:
        store = harness.store
        run = await harness.only_run()
        assert [s.outcome for s in run.steps] == ["pending"]  # no record of the call
        assert peer.pokes == 1  # and yet it acted

        await harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
        await harness.drain()
        ended = await harness.only_run()
        assert ended.outcome is RunOutcome.CANCELLED, ended
        budget = harness.guards.keys.budget()
        assert await harness.guards._redis.zrange(budget, 0, -1) == [run.id.encode()]
        assert await store.queue_depth() == 0
