"""The whole path with live actions: a notification goes in, and the change is read back from
the real kube-apiserver (etcd + controller manager, no kubelet)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from receiver.model import RunOutcome
from tests.support.kube_fixtures import MakeDeployment, wait_for_revision
from tests.support.pipeline import MakeHarness

pytestmark = pytest.mark.kube

RULES = """
rules:
  - name: restart
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
    verify: {resolved_within: 10m}
  - name: scale-workers
    match: ['alertname="QueueBacklog"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.scale
        params: {delta: 2, max: 5}
    on_resolved:
      - action: kubernetes.scale
        params: {restore: true, max: 5}
  - name: rollback
    match: ['alertname="HighErrorRate"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_undo
        approval: required
"""


async def _assert_spec_unchanged(kube: Any, namespace: str, name: str, before: Any) -> None:
    # The controller keeps writing status (so resourceVersion moves); a spec change, which is
    # what an action makes, bumps metadata.generation.
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment(name, namespace)
    assert dep.metadata.generation == before.metadata.generation
    assert "remediator.io/run-id" not in (dep.metadata.annotations or {})
    assert dep.spec.template == before.spec.template


def _labels(alertname: str, namespace: str, name: str) -> dict[str, str]:
    return {"alertname": alertname, "namespace": namespace, "deployment": name}


async def test_restart_runs_live_and_is_verified_when_the_alert_resolves(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    await make_deployment("web")
    live = await make_harness(RULES, kube=kube_admin, dry_run=False)
    await live.deliver(_labels("HighMemoryUsage", kube_namespace, "web"))
    run = await live.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    assert [(s.action, s.outcome) for s in run.steps] == [("kubernetes.rollout_restart", "ok")]

    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", kube_namespace)
    assert "kubectl.kubernetes.io/restartedAt" in dep.spec.template.metadata.annotations
    assert dep.metadata.annotations.get("remediator.io/run-id") == run.id
    # The restart changed the pod template: the controller rolls it out as revision 2
    # (revision 1 is make_deployment's, so a count of ReplicaSets >= 1 could not fail).
    await wait_for_revision(kube_admin, kube_namespace, "web", 2)

    await live.deliver(_labels("HighMemoryUsage", kube_namespace, "web"), status="resolved")
    run = await live.only_run()
    assert run.outcome is RunOutcome.VERIFIED
    assert run.time_to_resolve_s is not None


async def test_scale_up_then_back_down_when_resolved(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    await make_deployment("worker", replicas=1)
    apps = k8s.AppsV1Api(kube_admin)
    live = await make_harness(RULES, kube=kube_admin, dry_run=False)
    await live.deliver(_labels("QueueBacklog", kube_namespace, "worker"))
    scale = await apps.read_namespaced_deployment_scale("worker", kube_namespace)
    assert scale.spec.replicas == 3

    await live.deliver(_labels("QueueBacklog", kube_namespace, "worker"), status="resolved")
    scale = await apps.read_namespaced_deployment_scale("worker", kube_namespace)
    assert scale.spec.replicas == 1
    run = await live.only_run()
    phases = [(s.phase, s.outcome, dict(s.before or {})) for s in run.steps]
    assert phases == [("run", "ok", {"replicas": 1}), ("resolve", "ok", {"replicas": 3})]


async def test_dry_run_with_a_cluster_uses_server_side_dry_run_and_changes_nothing(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    before = await make_deployment("web")
    live = await make_harness(RULES, kube=kube_admin, dry_run=True)
    await live.deliver(_labels("HighMemoryUsage", kube_namespace, "web"))
    run = await live.only_run()
    assert run.outcome is RunOutcome.DRY_RUN
    assert [(s.action, s.outcome) for s in run.steps] == [("kubernetes.rollout_restart", "dry_run")]
    await _assert_spec_unchanged(kube_admin, kube_namespace, "web", before)


async def test_a_step_that_needs_approval_waits_and_changes_nothing(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    before = await make_deployment("api")
    live = await make_harness(RULES, kube=kube_admin, dry_run=False)
    await live.deliver(_labels("HighErrorRate", kube_namespace, "api"))
    run = await live.only_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    assert [(s.action, s.outcome) for s in run.steps] == [
        ("kubernetes.rollout_undo", "awaiting_approval")
    ]
    await _assert_spec_unchanged(kube_admin, kube_namespace, "api", before)


async def test_a_run_taken_up_after_a_crash_does_not_scale_twice_and_restores_once(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    # The crash: the scale reached the cluster, the store never heard of it (the step still
    # pending, the run still running), and the alert's event is delivered again.
    await make_deployment("worker", replicas=1)
    apps = k8s.AppsV1Api(kube_admin)
    live = await make_harness(RULES, kube=kube_admin, dry_run=False)
    labels = _labels("QueueBacklog", kube_namespace, "worker")
    await live.deliver(labels)
    run = await live.only_run()
    async with live.store._pool.acquire() as conn:
        await conn.execute(
            "UPDATE steps SET outcome = 'pending', before = NULL, after = NULL, message = ''"
            " WHERE run_id = $1::uuid",
            run.id,
        )
        await conn.execute("UPDATE runs SET outcome = 'running' WHERE id = $1::uuid", run.id)
        await conn.execute("UPDATE alert_events SET state = 'pending', attempts = 0")
    await live.drain()

    scale = await apps.read_namespaced_deployment_scale("worker", kube_namespace)
    assert scale.spec.replicas == 3  # +2 once, not twice
    run = await live.only_run()
    (step,) = run.steps
    assert (step.outcome, dict(step.before or {}), dict(step.after or {})) == (
        "ok",
        {"replicas": 1},
        {"replicas": 3},
    )
    assert "already applied by this run" in step.message

    await live.deliver(labels, status="resolved")
    scale = await apps.read_namespaced_deployment_scale("worker", kube_namespace)
    assert scale.spec.replicas == 1  # back where it was before the run
