"""A step run a second time after a crash (a run taken up again) against a real kube-apiserver.

The crash fell between the Kubernetes write and the database recording it: the step runs again
with the same run, phase and step index and no record of the first attempt. It must not change
the object again; it reports the first attempt's change (same before and after), so the run's
record and a later restore still know what was done.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from pydantic import BaseModel

from remediations.base import Action, ActionContext, Clients, Outcome, Result
from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.pods import DeletePod
from remediations.kubernetes.restart import RolloutRestart
from remediations.kubernetes.rollback import RolloutUndo
from remediations.kubernetes.scale import Scale
from remediations.targets import Target
from tests.support.kube_actions import (
    deployment,
    make_revision_2,
    pod_names,
    read_scale,
    snapshot,
    two_containers,
)
from tests.support.kube_fixtures import MakeDeployment, wait_for_rollout_settled
from tests.support.polling import eventually

pytestmark = pytest.mark.kube


def step_ctx(
    api_client: Any,
    run_id: str,
    *,
    step: int = 0,
    phase: str = "run",
    recorded: dict[str, dict[str, Any]] | None = None,
) -> ActionContext:
    """The context the pipeline gives step ``step`` of ``phase`` of run ``run_id``."""
    return ActionContext(
        run_id=run_id,
        dry_run=False,
        clients=Clients({"kubernetes": api_client}),
        recorded=recorded or {},
        step=step,
        phase=phase,
    )


def new_run() -> str:
    return str(uuid.uuid4())


async def run_twice(
    action: Action, ctx: ActionContext, target: Target, params: BaseModel, kube: Any, ns: str
) -> tuple[Result, Result]:
    """Run the step, then again as a take-up would; assert the object changed once and the
    second Result reports the first one's change."""
    first = await action.run(ctx, target, params)
    assert first.outcome is Outcome.OK, first.message
    # The Deployment controller bumps the revision annotation after a template write: the
    # snapshot is of the object once it has, or it raced the controller (a flake under load).
    await wait_for_rollout_settled(kube, ns, target.name)
    written = await snapshot(kube, ns, target.name)
    again = await action.run(ctx, target, params)
    assert again.outcome is Outcome.OK, again.message
    assert "already applied by this run before a restart" in again.message
    assert (again.before, again.after) == (first.before, first.after)
    assert await snapshot(kube, ns, target.name) == written  # not written again
    # Its preview is the change it made, so an approval bound to it still matches.
    preview = await action.preview(ctx, target, params)
    assert (preview.before, preview.after) == (first.before, first.after) or isinstance(
        action, RolloutRestart
    )
    return first, again


# --------------------------------------------------------------------------------------------
# scale and its restore


async def test_replayed_scale_and_restore_end_at_the_original_count(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The reviewer's case: +2 at 2 replicas, crash, retry, resolve, crash, retry."""
    ns, run = kube_namespace, new_run()
    await make_deployment("web", replicas=2)
    target = deployment(ns)
    ctx = step_ctx(kube_admin, run)
    _, again = await run_twice(
        Scale(), ctx, target, Scale.Params(delta=2, min=1, max=20), kube_admin, ns
    )
    assert (again.before, again.after) == ({"replicas": 2}, {"replicas": 4})
    assert await read_scale(kube_admin, ns) == 4

    # The take-up records what the replayed step reported: its restore undoes +2, once.
    own = {Scale.name: {"before": dict(again.before), "after": dict(again.after)}}
    restore = step_ctx(kube_admin, run, phase="resolve", recorded=own)
    params = Scale.Params(restore=True, min=1, max=20)
    _, restored = await run_twice(Scale(), restore, target, params, kube_admin, ns)
    assert (restored.before, restored.after) == ({"replicas": 4}, {"replicas": 2})
    assert await read_scale(kube_admin, ns) == 2

    # A restore happens once per run, whichever step asks for it again.
    other = step_ctx(kube_admin, run, step=1, phase="resolve", recorded=own)
    result = await Scale().run(other, target, params)
    assert result.outcome is Outcome.NOOP
    assert "already undone by its resolve step 0" in result.message
    assert await read_scale(kube_admin, ns) == 2


async def test_replayed_restore_does_not_scale_to_zero(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The outage: 1 -> 3 by the run, 3 -> 1 by its restore; the replayed restore saw the
    live count equal to the stamped one and took 2 off again."""
    ns, run = kube_namespace, new_run()
    await make_deployment("web", replicas=1)
    target = deployment(ns)
    raised = await Scale().run(step_ctx(kube_admin, run), target, Scale.Params(delta=2, max=5))
    assert raised.after == {"replicas": 3}
    own = {Scale.name: {"before": dict(raised.before), "after": dict(raised.after)}}
    restore = step_ctx(kube_admin, run, phase="resolve", recorded=own)
    await run_twice(Scale(), restore, target, Scale.Params(restore=True, max=5), kube_admin, ns)
    assert await read_scale(kube_admin, ns) == 1


async def test_another_run_scaling_the_same_step_index_is_not_a_replay(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """Case 07 stays: a second run's step 0 is its own change, not the first run's replay."""
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    target, params = deployment(ns), Scale.Params(delta=2, max=20)
    await Scale().run(step_ctx(kube_admin, new_run()), target, params)
    second = await Scale().run(step_ctx(kube_admin, new_run()), target, params)
    assert (second.outcome, second.before, second.after) == (
        Outcome.OK,
        {"replicas": 4},
        {"replicas": 6},
    )
    assert await read_scale(kube_admin, ns) == 6


# --------------------------------------------------------------------------------------------
# the pod template actions


async def test_replayed_set_resources_and_set_env(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns, run = kube_namespace, new_run()
    await make_deployment("web", containers=two_containers())
    target = deployment(ns)
    resources = SetResources.Params.model_validate(
        {"container": "app", "memory_limit": {"value": "512Mi"}}
    )
    first, _ = await run_twice(
        SetResources(), step_ctx(kube_admin, run), target, resources, kube_admin, ns
    )
    assert first.before["limits"] == {"memory": "256Mi"}
    env = SetEnv.Params(container="app", name="MODE", value="safe")
    first, _ = await run_twice(
        SetEnv(), step_ctx(kube_admin, run, step=1), target, env, kube_admin, ns
    )
    assert (first.before["value"], first.after["value"]) == (None, "safe")


async def test_replayed_restart_does_not_restart_again(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    first, again = await run_twice(
        RolloutRestart(),
        step_ctx(kube_admin, new_run()),
        deployment(ns),
        RolloutRestart.Params(),
        kube_admin,
        ns,
    )
    assert first.before == {"restartedAt": None}
    assert again.after["restartedAt"]


async def test_replayed_rollout_undo_does_not_undo_the_undo(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    first, _ = await run_twice(
        RolloutUndo(),
        step_ctx(kube_admin, new_run()),
        deployment(ns),
        RolloutUndo.Params(),
        kube_admin,
        ns,
    )
    assert (first.before["revision"], first.after["to_revision"]) == (2, 1)


# --------------------------------------------------------------------------------------------
# delete_pod: the record is on the Deployment; the replacements are not deleted


async def live_pods(kube: Any, ns: str) -> dict[str, str]:
    pods = await k8s.CoreV1Api(kube).list_namespaced_pod(ns, label_selector="app=web")
    return {
        p.metadata.uid: p.metadata.name for p in pods.items if p.metadata.deletion_timestamp is None
    }


async def test_replayed_delete_pod_leaves_the_replacements(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    await eventually(lambda: pod_names(kube_admin, ns, "app=web"), lambda n: len(n) == 2)
    action, target, ctx = DeletePod(), deployment(ns), step_ctx(kube_admin, new_run())
    first = await action.run(ctx, target, DeletePod.Params())
    assert first.outcome is Outcome.OK
    # The ReplicaSet replaces the deleted pod; those two are what a retry must leave alone.
    live = await eventually(lambda: live_pods(kube_admin, ns), lambda pods: len(pods) == 2)
    assert not set(live.values()) & set(first.after["deleted"])

    again = await action.run(ctx, target, DeletePod.Params())
    assert again.outcome is Outcome.OK
    assert "already applied by this run before a restart" in again.message
    assert (again.before, again.after) == (first.before, first.after)
    assert await live_pods(kube_admin, ns) == live
