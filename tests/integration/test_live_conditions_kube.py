"""``when: {rolled_out_within: 30m}`` against the real kube-apiserver: the newest ReplicaSet's
revision and creationTimestamp decide between rolling back and scaling out, and the decision is
bound into the run.

The apiserver stamps creationTimestamp itself, so "a release long ago" is made by the clock
the pipeline is given: two hours ahead, the ReplicaSet created a moment ago is two hours old.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from receiver.model import RunOutcome
from tests.support.kube_fixtures import (
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    owned_replica_sets,
    patch_deployment,
    wait_for_revision,
)
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.redis import RedisServer

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]

RULES = """
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_undo
        when: {rolled_out_within: 30m}
        approval: never
      - action: kubernetes.scale
        when: {not_rolled_out_within: 30m}
        params: {delta: 2, max: 5}
"""


class Clock:
    """The pipeline's clock, moved by the test."""

    def __init__(self, ahead: timedelta = timedelta(0)) -> None:
        self.ahead = ahead

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def labels(ns: str, name: str = "web") -> dict[str, str]:
    return {"alertname": "HighErrorRate", "namespace": ns, "deployment": name}


async def released_twice(kube: Any, ns: str, make_deployment: MakeDeployment) -> Any:
    """web at revision 2 (image a:2), revision 1 (a:1) before it; the ReplicaSet of 2."""
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    body = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "img/a:2"}]}}}}
    await patch_deployment(kube, ns, "web", body, STRATEGIC_MERGE_PATCH)
    await wait_for_revision(kube, ns, "web", 2)
    return (await owned_replica_sets(kube, ns, "web"))[-1]


async def state(kube: Any, ns: str) -> tuple[str, int]:
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment("web", ns)
    return dep.spec.template.spec.containers[0].image, dep.spec.replicas


async def test_a_recent_release_is_rolled_back_and_the_fact_is_on_the_run(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    newest = await released_twice(kube_admin, kube_namespace, make_deployment)
    live = await make_harness(RULES, kube=kube_admin, dry_run=False, clock=Clock())
    await live.deliver(labels(kube_namespace))

    assert await state(kube_admin, kube_namespace) == ("img/a:1", 1)  # rolled back, not scaled
    run = await live.only_run()
    assert [(s.action, s.outcome) for s in run.steps] == [("kubernetes.rollout_undo", "ok")]
    assert run.decision is not None
    (fact,) = run.decision["facts"]
    assert (fact["kind"], fact["revision"], fact["replicaset"]) == (
        "rollout",
        2,
        newest.metadata.name,
    )
    assert datetime.fromisoformat(fact["created_at"]) == newest.metadata.creation_timestamp
    decided = [(s["action"], s["included"]) for s in run.decision["steps"]]
    assert decided == [("kubernetes.rollout_undo", True), ("kubernetes.scale", False)]
    assert (
        "rolled_out_within 30m: holds (newest release: revision 2"
        in run.decision["steps"][0]["why"][0]
    )
    created = [a for a in await live.store.audit_entries(run.id) if a["kind"] == "run.created"]
    assert created[0]["data"]["decision"] == run.decision


async def test_a_release_long_ago_is_scaled_out_instead(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    await released_twice(kube_admin, kube_namespace, make_deployment)
    later = Clock(ahead=timedelta(hours=2))
    live = await make_harness(RULES, kube=kube_admin, dry_run=False, clock=later)
    await live.deliver(labels(kube_namespace))

    assert await state(kube_admin, kube_namespace) == ("img/a:2", 3)  # scaled out, kept
    run = await live.only_run()
    assert [(s.action, s.outcome) for s in run.steps] == [("kubernetes.scale", "ok")]
    assert run.decision is not None
    why = run.decision["steps"][0]["why"][0]
    assert why.startswith("rolled_out_within 30m: does not hold (newest release: revision 2")
    assert "created 2h" in why  # and the seconds since the ReplicaSet was created


async def test_a_target_that_is_missing_decides_nothing_and_says_so(
    make_harness: MakeHarness, kube_admin: Any, kube_namespace: str
) -> None:
    live = await make_harness(RULES, kube=kube_admin, dry_run=False, clock=Clock())
    await live.deliver(labels(kube_namespace, "ghost"))
    assert await live.runs() == []
    event = await live.store.get_event(1)
    assert event is not None
    ((skip),) = event["skips"]
    assert skip["rule"] == "errors"
    assert skip["reason"].startswith("no step applies at occurrence 1: step 0: ")
    assert f"cannot tell (Deployment {kube_namespace}/ghost not found)" in skip["reason"]


async def test_a_run_taken_up_again_keeps_the_decision_it_was_created_with(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    redis_controlled: RedisServer,
) -> None:
    await released_twice(kube_admin, kube_namespace, make_deployment)
    clock = Clock()
    live = await make_harness(RULES, kube=kube_admin, dry_run=False, clock=clock)
    await live.intake.accept(notification(alert(labels(kube_namespace))))
    redis_controlled.stop()
    try:
        assert await live.drain() == 0  # planned (a rollback), then the guards were down
        (run,) = await live.runs()
        assert run.outcome is RunOutcome.PENDING
    finally:
        redis_controlled.start()
    # Two hours later a fresh decision would scale out; the run keeps its rollback.
    clock.ahead = timedelta(hours=2)
    async with live.store._pool.acquire() as conn:
        await conn.execute("UPDATE alert_events SET not_before = now() WHERE state = 'pending'")
    await live.drain()
    run = await live.only_run()
    assert [(s.action, s.outcome) for s in run.steps] == [("kubernetes.rollout_undo", "ok")]
    assert await state(kube_admin, kube_namespace) == ("img/a:1", 1)
