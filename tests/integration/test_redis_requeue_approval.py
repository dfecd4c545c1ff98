"""An approved requeue runs while its dead-letter queue moves (real Redis, real pipeline).

What an approver of ``redis.requeue_dead_letters`` approves is "move at most ``max_messages``
dead letters of this queue (its layout and keys) back". The plan bound into the approval must
hold exactly that: a dead letter more or less between the request and the click is what a
queue in an incident does, and must not supersede the approval; another cap or other keys
must.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from receiver.approvals.plan import bound_plan, plan_hash
from receiver.approvals.policy import ApproverPolicy, Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalState, RunOutcome
from remediations.base import ActionContext, ActionRefused, Clients, Outcome
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues
from remediations.redis_queue.requeue import RequeueDeadLetters, RequeueParams
from remediations.targets import Target
from tests.support.approvals import MakeApprovalEnv

pytestmark = [pytest.mark.redis]

SPECS = {
    "mail": QueueSpec(Layout.LIST, "mail", "mail:dlq"),
    "tasks": QueueSpec(Layout.CELERY, "tasks", "tasks:dlq"),
    "invoices": QueueSpec(Layout.RQ, "rq:queue:invoices", "rq:failed:invoices"),
    "clicks": QueueSpec(Layout.STREAM, "clicks", group="counters"),
}


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[RedisQueues]:
    created = RedisQueues("ops", redis.asyncio.Redis.from_url(redis_url), SPECS)
    try:
        yield created
    finally:
        await created.close()


def context(queues: RedisQueues, approved: dict[str, Any] | None = None) -> ActionContext:
    return ActionContext("run-7", False, Clients({"redis:ops": queues}), approved=approved)


def cap(n: int) -> RequeueParams:
    return RequeueParams.model_validate({"max_messages": n, "min_idle": "1s"})


async def digest(queues: RedisQueues, queue: str, params: RequeueParams) -> str:
    target = Target("RedisQueue", "", f"ops/{queue}")
    change = await RequeueDeadLetters().preview(context(queues), target, params)
    plan = bound_plan(
        action="redis.requeue_dead_letters",
        target=target,
        params=params.model_dump(mode="json"),
        change=change,
    )
    return plan_hash(plan)


async def add_dead(r: Any, queue: str, n: int, start: int) -> None:
    """``n`` more dead letters (or, for the stream, idle unacknowledged entries)."""
    ids = [f"d{start + i}" for i in range(n)]
    if queue == "invoices":
        for job in ids:
            await r.hset(f"rq:job:{job}", mapping={"status": "failed", "data": job})
            await r.zadd("rq:failed:invoices", {job: 1_900_000_000 + start})
    elif queue == "clicks":
        for job in ids:
            await r.xadd("clicks", {"n": job})
        await r.xreadgroup("counters", "gone", {"clicks": ">"}, count=n)
    else:
        await r.lpush(SPECS[queue].dead_letter_key, *ids)


async def pending(r: Any) -> list[dict[str, Any]]:
    return list(await r.xpending_range("clicks", "counters", min="-", max="+", count=100))


@pytest.mark.parametrize("queue", sorted(SPECS))
async def test_the_plan_hash_holds_while_the_dead_letter_queue_moves(
    queues: RedisQueues, queue: str
) -> None:
    r = queues.client
    await r.xgroup_create("clicks", "counters", id="0", mkstream=True)
    await add_dead(r, queue, 3, 0)
    first = await digest(queues, queue, cap(5))
    await add_dead(r, queue, 4, 3)  # 7 now: past the cap as well
    assert await digest(queues, queue, cap(5)) == first
    # Drained by someone else meanwhile: still the same plan.
    if queue == "clicks":
        await r.xack("clicks", "counters", *[e["message_id"] for e in await pending(r)])
    else:
        await r.delete(SPECS[queue].dead_letter_key)
    assert await digest(queues, queue, cap(5)) == first


async def test_another_cap_or_other_keys_are_another_plan(queues: RedisQueues) -> None:
    await queues.client.lpush("mail:dlq", "a", "b")
    approved = await digest(queues, "mail", cap(5))
    assert await digest(queues, "mail", cap(6)) != approved
    # The queue's configuration reloaded with another dead-letter list: not what was approved.
    moved = RedisQueues("ops", queues.client, {"mail": QueueSpec(Layout.LIST, "mail", "mail:x")})
    assert await digest(moved, "mail", cap(5)) != approved


async def test_an_approved_run_moves_at_most_the_cap_and_refuses_other_keys(
    queues: RedisQueues,
) -> None:
    r = queues.client
    await r.lpush("mail:dlq", *[f"m{i}" for i in range(12)])
    action = RequeueDeadLetters()
    target = Target("RedisQueue", "", "ops/mail")
    change = await action.preview(context(queues), target, cap(5))
    approved = dict(change.preconditions)

    done = await action.run(context(queues, approved), target, cap(5))

    assert (done.outcome, done.after["moved"]) == (Outcome.OK, 5)
    assert await r.llen("mail:dlq") == 7
    elsewhere = {**approved, "dead_letter_key": "mail:other"}
    with pytest.raises(ActionRefused, match="approved"):
        await action.run(context(queues, elsewhere), target, cap(5))
    assert await r.llen("mail:dlq") == 7


REQUEUE_RULES = """
rules:
  - name: requeue-mail
    match: ['alertname="MailDeadLetters"']
    target: {kind: RedisQueue, name: "ops/{{ labels.queue }}"}
    steps:
      - action: redis.requeue_dead_letters
        params: {max_messages: 10}
        approval: required
"""
DAN = Identity("dan", "operator-token", "dan")


@pytest.mark.postgres
async def test_a_requeue_approved_after_its_queue_grew_runs(
    approval_env: MakeApprovalEnv, redis_url: str
) -> None:
    ops = RedisQueues("ops", redis.asyncio.Redis.from_url(redis_url), SPECS)
    try:
        env = await approval_env(
            rules=REQUEUE_RULES,
            policy=ApproverPolicy.of(by_rule={"requeue-mail": ["dan"]}),
            clients={"redis:ops": ops},
        )
        await ops.client.lpush("mail:dlq", *[f"m{i}" for i in range(4)])
        await env.harness.deliver({"alertname": "MailDeadLetters", "queue": "mail"})
        [parked] = await env.harness.runs()
        asked = await env.desk.store.latest_approval(parked.id, 0)
        assert asked is not None
        assert asked.state is ApprovalState.PENDING

        # The incident goes on: 9 more messages die before the approver clicks.
        await ops.client.lpush("mail:dlq", *[f"m{i}" for i in range(4, 13)])
        await env.desk.decide(asked.id, Decision.APPROVE, DAN, Origin(Channel.API, "", "t"))
        await env.harness.drain()

        run = await env.harness.only_run()
        assert [(s.outcome, (s.after or {}).get("moved")) for s in run.steps] == [("ok", 10)], (
            run.steps
        )
        assert run.outcome is RunOutcome.SUCCEEDED
        final = await env.desk.store.latest_approval(run.id, 0)
        assert final is not None
        assert (final.id, final.state) == (asked.id, ApprovalState.APPROVED)
        assert (await ops.client.llen("mail:dlq"), await ops.client.llen("mail")) == (3, 10)
    finally:
        await ops.close()
