"""Steps of one run against a real kube-apiserver + controller-manager: each step is its own
change, and only the same step taken up again after a crash is a repetition.

A run may hold several steps of one action (a factor on two containers; a restart, then an
``on_failed`` restart once the verification failed): none of them suppresses another. The
step-keyed write record (``replay``) is what keeps a crash replay from acting twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from remediations.base import ActionRefused, Outcome
from remediations.kubernetes.container import SetResources
from remediations.kubernetes.restart import RESTARTED_AT, RolloutRestart
from remediations.kubernetes.scale import Scale
from remediations.registry import default_registry
from tests.integration.test_kubernetes_replay import new_run, step_ctx
from tests.support.kube_actions import (
    deployment,
    read,
    read_scale,
    snapshot,
    two_containers,
)
from tests.support.kube_fixtures import REVISION, MakeDeployment, wait_for_revision
from tests.support.polling import eventually

pytestmark = pytest.mark.kube

RULES = Path(__file__).resolve().parents[2] / "rules"


def memory_limits(dep: Any) -> dict[str, str]:
    return {c.name: c.resources.limits["memory"] for c in dep.spec.template.spec.containers}


# --------------------------------------------------------------------------------------------
# set_resources: a factor on two containers, and again in on_failed


async def test_factor_steps_of_one_run_each_apply_and_a_replay_applies_once(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The reviewer's case: step 1 (the sidecar) read "already applied by run ..." and was not
    raised, because step 0 (the app) had stamped the Deployment with the run's id."""
    ns, run = kube_namespace, new_run()
    await make_deployment("web", containers=two_containers())  # app 256Mi, sidecar 64Mi
    action, target, registry = SetResources(), deployment(ns), default_registry()
    app = registry.parse_params(
        action.name, {"container": "app", "memory_limit": {"factor": 1.5, "max": "4Gi"}}
    )
    sidecar = registry.parse_params(
        action.name, {"container": "sidecar", "memory_limit": {"factor": 2, "max": "1Gi"}}
    )

    # Each step is a template change: the controller rolls revisions 2 and 3 (waited for in
    # between: two writes before it syncs would be one revision, and the test would race it).
    first = await action.run(step_ctx(kube_admin, run, step=0), target, app)
    await wait_for_revision(kube_admin, ns, "web", 2)
    second = await action.run(step_ctx(kube_admin, run, step=1), target, sidecar)
    assert (first.outcome, second.outcome) == (Outcome.OK, Outcome.OK), second.message
    assert second.after["limits"] == {"memory": "128Mi"}
    dep = await wait_for_revision(kube_admin, ns, "web", 3)
    assert memory_limits(dep) == {"app": "384Mi", "sidecar": "128Mi"}

    # Step 1 taken up again after a crash: its record says it wrote; the factor is not
    # applied a second time, and the result is the first attempt's.
    written = await snapshot(kube_admin, ns)
    again = await action.run(step_ctx(kube_admin, run, step=1), target, sidecar)
    assert again.outcome is Outcome.OK
    assert "already applied by this run before a restart" in again.message
    assert (again.before, again.after) == (second.before, second.after)
    assert await snapshot(kube_admin, ns) == written

    # An on_failed step of the same run raising the app again is a change of its own.
    escalation = step_ctx(kube_admin, run, step=0, phase="on_failed")
    raised = await action.run(escalation, target, app)
    assert (raised.outcome, raised.after["limits"]) == (Outcome.OK, {"memory": "576Mi"})
    replayed = await action.run(escalation, target, app)
    assert "already applied by this run before a restart" in replayed.message
    assert memory_limits(await read(kube_admin, ns)) == {"app": "576Mi", "sidecar": "128Mi"}


# --------------------------------------------------------------------------------------------
# rollout_restart: every restart step restarts, a replayed one does not


async def test_every_restart_step_of_a_run_restarts_and_a_replay_does_not(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns, run = kube_namespace, new_run()
    await make_deployment("web")
    action, target, params = RolloutRestart(), deployment(ns), RolloutRestart.Params()

    # Two restart steps in a row: within the same second restartedAt is the same text, and the
    # second still rolls (the template names the step that restarted it).
    for step, revision in ((0, 2), (1, 3)):
        result = await action.run(step_ctx(kube_admin, run, step=step), target, params)
        assert result.outcome is Outcome.OK, result.message
        await wait_for_revision(kube_admin, ns, "web", revision)

    # The verification failed: the on_failed restart is asked for, and restarts.
    escalation = step_ctx(kube_admin, run, step=0, phase="on_failed")
    restarted = await action.run(escalation, target, params)
    assert restarted.outcome is Outcome.OK, restarted.message
    dep = await wait_for_revision(kube_admin, ns, "web", 4)
    assert dep.spec.template.metadata.annotations[RESTARTED_AT] == restarted.after["restartedAt"]

    # That step taken up again after a crash does not restart a fourth time.
    written = await snapshot(kube_admin, ns)
    again = await action.run(escalation, target, params)
    assert again.outcome is Outcome.OK
    assert "already applied by this run before a restart" in again.message
    assert again.after == restarted.after
    assert await snapshot(kube_admin, ns) == written
    assert (await read(kube_admin, ns)).metadata.annotations[REVISION] == "4"


# --------------------------------------------------------------------------------------------
# scale: the shipped QueueBacklog rule from 0 consumers; a restore on a recreated Deployment


def queue_backlog_scale() -> tuple[dict[str, Any], dict[str, Any]]:
    """The params of the shipped scale-workers-on-queue-backlog rule: its step, its restore."""
    rules = yaml.safe_load((RULES / "queue-backlog.yaml").read_text())["rules"]
    rule = next(r for r in rules if r["name"] == "scale-workers-on-queue-backlog")
    return rule["steps"][0]["params"], rule["on_resolved"][0]["params"]


async def test_the_queue_backlog_rule_gives_a_deployment_at_zero_its_first_pod_and_takes_it_back(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """Its description says "at least one more pod": at 0 consumers, 0 x 1.5 was 0 and the
    step a noop "already has 0 replicas", although the rule says min: 1."""
    ns, run = kube_namespace, new_run()
    await make_deployment("web", replicas=0)
    step, undo = (default_registry().parse_params(Scale.name, p) for p in queue_backlog_scale())
    raised = await Scale().run(step_ctx(kube_admin, run), deployment(ns), step)
    assert (raised.outcome, raised.before, raised.after) == (
        Outcome.OK,
        {"replicas": 0},
        {"replicas": 1},
    ), raised.message
    assert await read_scale(kube_admin, ns) == 1

    own = {Scale.name: {"before": dict(raised.before), "after": dict(raised.after)}}
    restore = step_ctx(kube_admin, run, phase="resolve", recorded=own)
    restored = await Scale().run(restore, deployment(ns), undo)
    assert (restored.outcome, restored.after) == (Outcome.OK, {"replicas": 0}), restored.message
    # (the Scale subresource omits a count of 0: read the Deployment)
    assert (await read(kube_admin, ns)).spec.replicas == 0


async def recreate(kube_admin: Any, ns: str, replicas: int, annotations: dict[str, str]) -> str:
    """Delete Deployment ``web`` and create it again (as a GitOps sync would), with
    ``replicas`` and ``annotations``; the new uid."""
    apps = k8s.AppsV1Api(kube_admin)
    old = await read(kube_admin, ns)
    await apps.delete_namespaced_deployment("web", ns)

    async def gone() -> bool:
        try:
            await apps.read_namespaced_deployment("web", ns)
        except ApiException as exc:
            return exc.status == 404
        return False

    await eventually(gone, what="Deployment web deleted")
    created = await apps.create_namespaced_deployment(
        ns,
        k8s.V1Deployment(
            metadata=k8s.V1ObjectMeta(
                name="web", labels=old.metadata.labels, annotations=annotations
            ),
            spec=k8s.V1DeploymentSpec(
                replicas=replicas, selector=old.spec.selector, template=old.spec.template
            ),
        ),
    )
    assert created.metadata.uid != old.metadata.uid
    return str(created.metadata.uid)


@pytest.mark.parametrize("copied", [False, True], ids=["fresh", "annotations-copied"])
async def test_a_restore_leaves_a_deployment_recreated_since_the_run_alone(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment, copied: bool
) -> None:
    """2 -> 4 by the run; the Deployment is deleted and recreated with 4 replicas (its owner's
    number). The restore took 2 off it, as if the run had added them. ``copied``: the new
    manifest was exported from the live object, remediator's annotations included."""
    ns, run = kube_namespace, new_run()
    await make_deployment("web", replicas=2)
    raised = await Scale().run(
        step_ctx(kube_admin, run), deployment(ns), Scale.Params(delta=2, max=10)
    )
    assert raised.after == {"replicas": 4}
    live = (await read(kube_admin, ns)).metadata.annotations
    await recreate(kube_admin, ns, 4, dict(live) if copied else {})

    own = {Scale.name: {"before": dict(raised.before), "after": dict(raised.after)}}
    restore = step_ctx(kube_admin, run, phase="resolve", recorded=own)
    match = "not the object this run scaled" if copied else "neither remediator.io/replicas"
    with pytest.raises(ActionRefused, match=match):
        await Scale().run(restore, deployment(ns), Scale.Params(restore=True, max=10))
    assert await read_scale(kube_admin, ns) == 4
