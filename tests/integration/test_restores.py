"""Restores against the real kube-apiserver: overlapping scale runs, guards on the resolve path,
re-fires, and a raise that meets its cap.

Case 07: two open scale runs on one Deployment. A restore takes off only its own run's change,
and only while the live count is the one remediator last wrote: in either order the Deployment
ends where it was before the first, no restore removes what a still-open run added, and a
count someone else changed meanwhile is left alone and the restore refused, naming both counts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from receiver.guards.policy import AdmissionRequest
from receiver.model import GuardSpec, NamespacePolicy, RunOutcome, Target
from receiver.store import RunRecord
from tests.integration.test_lifecycle import received_long_ago
from tests.support.kube_fixtures import MakeDeployment
from tests.support.pipeline import Harness, MakeHarness

pytestmark = pytest.mark.kube

# rules/queue-backlog.yaml as shipped, without the cooldown (case 07's rule, 5s there).
SCALE = """
rules:
  - name: scale-workers-on-queue-backlog
    match: ['alertname="QueueBacklog"', 'deployment!=""']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.scale
        params: {factor: 1.5, min: 1, max: 20}
    verify: {resolved_within: 30m}
    on_resolved:
      - action: kubernetes.scale
        params: {restore: true, max: 20}
"""


def backlog(namespace: str, queue: str) -> dict[str, str]:
    return {
        "alertname": "QueueBacklog",
        "namespace": namespace,
        "deployment": "workers",
        "queue": queue,
    }


async def replicas(kube: Any, namespace: str) -> int:
    scale = await k8s.AppsV1Api(kube).read_namespaced_deployment_scale("workers", namespace)
    count: int = scale.spec.replicas
    return count


async def scale_by_hand(kube: Any, namespace: str, count: int) -> None:
    """What `kubectl scale --replicas` does: someone else changes the count."""
    await k8s.AppsV1Api(kube).patch_namespaced_deployment_scale(
        "workers", namespace, {"spec": {"replicas": count}}
    )


async def run_of(h: Harness, queue: str) -> RunRecord:
    """The run (with its steps) that the backlog of ``queue`` started."""
    for run in await h.runs():
        event = await h.store.get_event(run.event_id or 0)
        if event is not None and json.loads(event["labels"]).get("queue") == queue:
            record = await h.store.get_run(run.id)
            assert record is not None
            return record
    raise AssertionError(f"no run for queue {queue}")


def resolve_steps(run: RunRecord) -> list[tuple[str, str]]:
    return [(s.outcome, s.message) for s in run.steps if s.phase == "resolve"]


@pytest.fixture
async def live(
    make_harness: MakeHarness, kube_admin: Any, make_deployment: MakeDeployment
) -> Harness:
    await make_deployment("workers", replicas=4)
    return await make_harness(SCALE, kube=kube_admin, dry_run=False)


async def test_case_07_in_the_order_they_resolve(
    live: Harness, kube_admin: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    await live.deliver(backlog(ns, "orders"))
    assert await replicas(kube_admin, ns) == 6  # run A: 4 -> 6
    await live.deliver(backlog(ns, "invoices"))
    assert await replicas(kube_admin, ns) == 9  # run B: 6 -> 9
    await live.deliver(backlog(ns, "orders"), status="resolved")
    assert await replicas(kube_admin, ns) == 7  # A's +2 off; B's +3 stays while B is open
    await live.deliver(backlog(ns, "invoices"), status="resolved")
    assert await replicas(kube_admin, ns) == 4  # where it was before the first
    a = await run_of(live, "orders")
    assert resolve_steps(a) == [
        ("ok", f"scale Deployment {ns}/workers from 9 to 7 replicas (undoing this run's +2)")
    ]
    assert {r.outcome for r in await live.runs()} == {RunOutcome.VERIFIED}


async def test_case_07_resolved_in_the_other_order(
    live: Harness, kube_admin: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    await live.deliver(backlog(ns, "orders"))
    await live.deliver(backlog(ns, "invoices"))
    await live.deliver(backlog(ns, "invoices"), status="resolved")
    assert await replicas(kube_admin, ns) == 6  # B's +3 off, A's +2 stays
    await live.deliver(backlog(ns, "orders"), status="resolved")
    assert await replicas(kube_admin, ns) == 4


async def test_a_count_changed_by_hand_while_both_are_open_is_left_alone(
    live: Harness, kube_admin: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    await live.deliver(backlog(ns, "orders"))
    await live.deliver(backlog(ns, "invoices"))
    await scale_by_hand(kube_admin, ns, 12)
    await live.deliver(backlog(ns, "orders"), status="resolved")
    await live.deliver(backlog(ns, "invoices"), status="resolved")
    assert await replicas(kube_admin, ns) == 12
    b = await run_of(live, "invoices")
    for run, change in ((await run_of(live, "orders"), "+2"), (b, "+3")):
        ((outcome, message),) = resolve_steps(run)
        assert outcome == "refused"
        assert message.startswith(f"Deployment {ns}/workers has 12 replicas, not the 9 ")
        assert f"(run {b.id})" in message  # who set the 9
        assert f"this run's change was {change}" in message


async def test_a_count_changed_by_hand_after_the_first_restore_is_left_alone(
    live: Harness, kube_admin: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    await live.deliver(backlog(ns, "orders"))
    await live.deliver(backlog(ns, "invoices"))
    await live.deliver(backlog(ns, "orders"), status="resolved")
    assert await replicas(kube_admin, ns) == 7
    await scale_by_hand(kube_admin, ns, 5)
    await live.deliver(backlog(ns, "invoices"), status="resolved")
    assert await replicas(kube_admin, ns) == 5
    ((outcome, message),) = resolve_steps(await run_of(live, "invoices"))
    assert outcome == "refused"
    assert "has 5 replicas, not the 7 remediator last set" in message


async def test_one_run_restores_exactly_what_it_added_and_a_refire_adds_it_again(
    live: Harness, kube_admin: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    await live.deliver(backlog(ns, "orders"))
    await live.deliver(backlog(ns, "orders"), status="resolved")
    assert await replicas(kube_admin, ns) == 4  # 4 -> 6 -> 4
    await received_long_ago(live)
    # Alertmanager resolved it on its timeout; the source sends it again, same startsAt.
    await live.deliver(backlog(ns, "orders"))
    assert await replicas(kube_admin, ns) == 6
    runs = sorted(await live.runs(), key=lambda r: r.refire)
    assert [(r.refire, r.starts_at == runs[0].starts_at) for r in runs] == [(0, True), (1, True)]


# --------------------------------------------------------------------------------------------
# the resolve path's guards


async def make_jobs_due(h: Harness) -> None:
    async with h.store._pool.acquire() as conn:
        await conn.execute("UPDATE jobs SET not_before = now() WHERE state = 'pending'")


async def test_a_pause_holds_the_restore_until_it_is_lifted(
    live: Harness, kube_admin: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    await live.deliver(backlog(ns, "orders"))
    await live.guards.pause(None, "maintenance")
    try:
        await live.deliver(backlog(ns, "orders"), status="resolved")
        assert await replicas(kube_admin, ns) == 6
        ((outcome, message),) = resolve_steps(await live.only_run())
        assert outcome == "pending"
        assert message.startswith("held by the pause guard: automation paused: maintenance")
        await make_jobs_due(live)
        await live.drain()  # still paused: held again, nothing written
        assert await replicas(kube_admin, ns) == 6
    finally:
        await live.guards.resume()
    await make_jobs_due(live)
    await live.drain()
    assert await replicas(kube_admin, ns) == 4
    assert [o for o, _ in resolve_steps(await live.only_run())] == ["ok"]


async def test_the_target_lock_holds_the_restore_until_it_is_free(
    live: Harness, kube_admin: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    await live.deliver(backlog(ns, "orders"))
    holder = AdmissionRequest(
        run_id="another-run",
        rule="other",
        target=Target("Deployment", ns, "workers"),
        disruptive=False,
        spec=GuardSpec(),
    )
    admission = await live.guards.admit(holder)
    assert admission.admitted
    await live.deliver(backlog(ns, "orders"), status="resolved")
    assert await replicas(kube_admin, ns) == 6
    ((outcome, message),) = resolve_steps(await live.only_run())
    assert (outcome, message.split(";")[0]) == (
        "pending",
        "held by the lock guard: target is locked by run another-run",
    )
    await live.guards.release(holder, admission)
    await make_jobs_due(live)
    await live.drain()
    assert await replicas(kube_admin, ns) == 4


async def test_a_namespace_the_policy_no_longer_permits_refuses_the_restore(
    live: Harness, make_harness: MakeHarness, kube_admin: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    await live.deliver(backlog(ns, "orders"))
    # The policy changed (a restart with new settings) before the alert resolved.
    denied = await make_harness(
        SCALE, policy=NamespacePolicy(deny=(ns,)), kube=kube_admin, dry_run=False
    )
    await denied.deliver(backlog(ns, "orders"), status="resolved")
    assert await replicas(kube_admin, ns) == 6
    ((outcome, message),) = resolve_steps(await live.only_run())
    assert outcome == "refused"
    assert message.startswith(f"refused by the namespace guard: namespace {ns} is not permitted")


# --------------------------------------------------------------------------------------------
# case 05: a raise that meets its cap


RAISE = """
rules:
  - name: raise-memory-limit
    match: ['alertname="HighMemoryUsage"', 'deployment!=""']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.set_resources
        params:
          container: app
          memory_limit: {factor: 1.5, max: 4Gi}
          cpu_limit: {factor: 1.5, max: "2"}
        approval: never
"""


@pytest.mark.parametrize(
    ("limits", "expected_limits", "outcome"),
    [
        pytest.param(
            {"memory": "5G", "cpu": "3"}, {"memory": "5G", "cpu": "3"}, "noop", id="case-05"
        ),
        pytest.param(
            {"memory": "5G", "cpu": "1"}, {"memory": "5G", "cpu": "1500m"}, "ok", id="one-held"
        ),
        pytest.param(
            {"memory": "3Gi", "cpu": "1"}, {"memory": "4Gi", "cpu": "1500m"}, "ok", id="capped"
        ),
    ],
)
async def test_a_raise_never_lowers_a_limit_above_its_cap(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    limits: dict[str, str],
    expected_limits: dict[str, str],
    outcome: str,
) -> None:
    container = k8s.V1Container(
        name="app",
        image="registry.invalid/app:1",
        resources=k8s.V1ResourceRequirements(limits=limits, requests={"memory": "1Gi"}),
    )
    await make_deployment("cart", containers=[container])
    h = await make_harness(RAISE, kube=kube_admin, dry_run=False)
    await h.deliver(
        {"alertname": "HighMemoryUsage", "namespace": kube_namespace, "deployment": "cart"}
    )
    (step,) = (await h.only_run()).steps
    assert step.outcome == outcome
    if "5G" in limits.values():
        assert "memory limit 5G unchanged: already at or above the cap 4Gi" in step.message
        assert "-> 4Gi" not in step.message
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("cart", kube_namespace)
    assert dep.spec.template.spec.containers[0].resources.limits == expected_limits
