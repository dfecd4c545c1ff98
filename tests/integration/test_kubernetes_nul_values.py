"""A live value holding U+0000 never fails the record of the step that acted on it (real
kube-apiserver, PostgreSQL, Redis).

The API server keeps U+0000 in an environment variable's value or an annotation; jsonb refuses
it. A step that replaced such a value acted, then its record (before: the live value) failed
with UntranslatableCharacterError on every retry of its event, the run left ``running`` until
the event was dead; one that needed an approval could not even ask for it. The store keeps
U+0000 as the text ``\\x00``, and an approved step compares the live value so written with the
one approved (it was refused as changed since its approval).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from receiver.approvals.state import Decision
from receiver.model import RunOutcome
from tests.support.approval_deciders import ALICE, API
from tests.support.approvals import MakeApprovalEnv
from tests.support.kube_fixtures import MERGE_PATCH, MakeDeployment, patch_deployment
from tests.support.pipeline import MakeHarness

pytestmark = pytest.mark.kube

RULES = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.set_env
        params: {container: app, name: DB_POOL_SIZE, value: "5"}
        approval: APPROVAL
      - action: kubernetes.rollout_restart
        approval: never
"""


async def _cart(make_deployment: MakeDeployment, kube: Any, namespace: str) -> None:
    """A Deployment ``cart`` whose variable and restart annotation hold U+0000."""
    env = [k8s.V1EnvVar(name="DB_POOL_SIZE", value="10\x00")]
    await make_deployment("cart", containers=[k8s.V1Container(name="app", image="x", env=env)])
    restarted = {"kubectl.kubernetes.io/restartedAt": "x\x00y"}
    patch = {"spec": {"template": {"metadata": {"annotations": restarted}}}}
    await patch_deployment(kube, namespace, "cart", patch, MERGE_PATCH)


async def _env(kube: Any, namespace: str) -> list[tuple[str, str]]:
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment("cart", namespace)
    return [(e.name, e.value) for e in dep.spec.template.spec.containers[0].env]


def _labels(namespace: str) -> dict[str, str]:
    return {"alertname": "Poke", "namespace": namespace, "deployment": "cart"}


async def test_a_step_replacing_a_value_with_nul_is_recorded_and_the_run_ends(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    await _cart(make_deployment, kube_admin, kube_namespace)
    h = await make_harness(RULES.replace("APPROVAL", "never"), kube=kube_admin, dry_run=False)
    await h.deliver(_labels(kube_namespace))  # nothing left queued: no retry
    run = await h.only_run()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert [s.outcome for s in run.steps] == ["ok", "ok"]
    assert run.steps[0].before == {"container": "app", "name": "DB_POOL_SIZE", "value": "10\\x00"}
    assert run.steps[1].before == {"restartedAt": "x\\x00y"}
    assert await _env(kube_admin, kube_namespace) == [("DB_POOL_SIZE", "5")]
    assert (await h.store.verify_audit()).ok


async def test_an_approved_step_replacing_a_value_with_nul_runs(
    approval_env: MakeApprovalEnv,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    await _cart(make_deployment, kube_admin, kube_namespace)
    env = await approval_env(rules=RULES.replace("APPROVAL", "required"), kube=kube_admin)
    await env.harness.deliver(_labels(kube_namespace))
    (approval,) = await env.desk.store.list_approvals()
    assert approval.plan["before"]["value"] == "10\\x00"
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    run = await env.harness.only_run()
    assert run.steps[0].outcome == "ok", run.steps
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert await _env(kube_admin, kube_namespace) == [("DB_POOL_SIZE", "5")]
    assert (await env.harness.store.verify_audit()).ok
