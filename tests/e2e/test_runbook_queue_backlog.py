"""QueueBacklog end to end (rules/queue-backlog.yaml, docs/playbooks/QueueBacklog.md): the
queue's gauge goes over 1000 and stays; Prometheus fires the shipped alert, Alertmanager routes
it, and the two rules that match it act: the consumers' Deployment is scaled up by half and the
queue's dead letters are moved back to it, at most 100, none lost or duplicated. The gauge goes
back down: the alert resolves, the added workers are taken away, both runs are verified, and
on-call heard about each step.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio

from tests.e2e.conftest import CURRENT_ALERTMANAGER, Stack
from tests.support.kube_fixtures import MakeDeployment
from tests.support.runbooks import deployment, own_pods, resolve_steps, run_of, until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.kube,
    pytest.mark.redis,
    pytest.mark.timeout(120),
    CURRENT_ALERTMANAGER,
]

SCALE = "scale-workers-on-queue-backlog"
REQUEUE = "requeue-dead-letters-on-queue-backlog"
QUEUE_TARGET = "RedisQueue/jobs/emails"


async def test_queue_backlog_scales_the_consumers_requeues_dead_letters_and_scales_back(
    stack: Stack, kube_admin: Any, bound_namespace: str, make_deployment: MakeDeployment
) -> None:
    namespace = bound_namespace
    await make_deployment("worker", replicas=2)
    target = f"Deployment/{namespace}/worker"
    pods = own_pods(stack.metrics, namespace, "worker", 2)
    series = [{"namespace": namespace, "pod": pod, "queue": "emails"} for pod in pods]
    queues = redis.asyncio.Redis.from_url(stack.queues_url, decode_responses=True)
    try:
        # 150 dead letters (oldest at the right, where producers LPUSH), 10 waiting messages.
        dead = [f"dead-{i:03d}" for i in range(150)]
        waiting = [f"msg-{i:03d}" for i in range(10)]
        await queues.lpush("emails:dead", *dead)
        await queues.lpush("emails", *waiting)

        for labels in series:
            stack.metrics.set("queue_messages_pending", labels, 5000)

        scaled = await run_of(stack.api, SCALE, target, "verifying", what="the scale-up")
        (step,) = [s for s in scaled["steps"] if s["phase"] == "run"]
        assert (step["action"], step["outcome"]) == ("kubernetes.scale", "ok"), step
        assert (await deployment(kube_admin, namespace, "worker")).spec.replicas == 3

        requeued = await run_of(stack.api, REQUEUE, QUEUE_TARGET, "verifying", what="the requeue")
        (move,) = requeued["steps"]
        assert (move["action"], move["outcome"]) == ("redis.requeue_dead_letters", "ok"), move
        # The cap held, the oldest dead letters went first, nothing was lost or duplicated.
        left = [str(m) for m in await queues.lrange("emails:dead", 0, -1)]
        work = [str(m) for m in await queues.lrange("emails", 0, -1)]
        assert (len(left), len(work)) == (50, 110)
        assert sorted(left + work) == sorted(dead + waiting)
        assert set(work) - set(waiting) == set(dead[:100])

        # On-call heard about both (the rule's `notify: {channel: oncall}`).
        for rule in (SCALE, REQUEUE):

            def about(body: dict[str, Any], rule: str = rule) -> bool:
                return body.get("rule") == rule and bool(body["steps"])

            await stack.sink.wait_for(f"about {rule}", about)

        # The backlog drains: the alert resolves and the added worker goes away again.
        for labels in series:
            stack.metrics.set("queue_messages_pending", labels, 100)
        closed = await run_of(stack.api, SCALE, target, "verified", what="the scale run verified")
        (restore,) = await resolve_steps(stack.api, closed, what="the scale run's restore")
        assert (restore["action"], restore["outcome"]) == ("kubernetes.scale", "ok"), restore

        async def back_to_two() -> bool:
            return bool((await deployment(kube_admin, namespace, "worker")).spec.replicas == 2)

        await until("the Deployment back at 2 replicas", back_to_two)
        await run_of(stack.api, REQUEUE, QUEUE_TARGET, "verified", what="the requeue verified")
        # Exactly one run of each rule: one alert episode.
        assert len(await stack.api.runs(rule=SCALE, target=target)) == 1
        assert len(await stack.api.runs(rule=REQUEUE, target=QUEUE_TARGET)) == 1
    finally:
        for labels in series:
            stack.metrics.remove("queue_messages_pending", labels)
        await queues.delete("emails", "emails:dead")
        await queues.aclose()
