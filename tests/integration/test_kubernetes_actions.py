"""Kubernetes actions against a real kube-apiserver + controller-manager: effects read back."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import (
    Action,
    ActionContext,
    ActionRefused,
    Clients,
    Outcome,
    ParamsError,
)
from remediations.kubernetes.api import RUN_ID_ANNOTATION
from remediations.kubernetes.catalog import ACTIONS
from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.pods import DeletePod
from remediations.kubernetes.restart import RESTARTED_AT, RolloutRestart
from remediations.kubernetes.rollback import RolloutUndo
from remediations.kubernetes.scale import Scale
from remediations.registry import default_registry
from remediations.targets import Target
from tests.support.kube import ControlPlane, api_client_from_kubeconfig
from tests.support.kube_fixtures import (
    MERGE_PATCH,
    REVISION,
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    make_db_stateful_set,
    owned_replica_sets,
    patch_deployment,
    wait_for_revision,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.kube


def make_ctx(
    api_client: Any,
    *,
    dry_run: bool = False,
    run_id: str | None = None,
    recorded: dict[str, dict[str, Any]] | None = None,
    step: int | None = None,
    phase: str = "run",
) -> ActionContext:
    return ActionContext(
        run_id=run_id or f"run-{uuid.uuid4().hex[:8]}",
        dry_run=dry_run,
        clients=Clients({"kubernetes": api_client}),
        recorded=recorded or {},
        step=step,
        phase=phase,
    )


def deployment(ns: str, name: str = "web") -> Target:
    return Target("Deployment", ns, name)


async def read(api_client: Any, ns: str, name: str = "web") -> Any:
    return await k8s.AppsV1Api(api_client).read_namespaced_deployment(name, ns)


def container(dep: Any, name: str) -> Any:
    return next(c for c in dep.spec.template.spec.containers if c.name == name)


def two_containers() -> list[Any]:
    return [
        k8s.V1Container(
            name="app",
            image="registry.invalid/app:1",
            env=[k8s.V1EnvVar(name="KEEP", value="1")],
            resources=k8s.V1ResourceRequirements(
                limits={"memory": "256Mi", "cpu": "500m"}, requests={"memory": "128Mi"}
            ),
        ),
        k8s.V1Container(
            name="sidecar",
            image="registry.invalid/sidecar:1",
            resources=k8s.V1ResourceRequirements(limits={"memory": "64Mi"}),
        ),
    ]


async def snapshot(api_client: Any, ns: str, name: str = "web") -> dict[str, Any]:
    """What a write would change: generation, spec and annotations (not controller status)."""
    dep = api_client.sanitize_for_serialization(await read(api_client, ns, name))
    return {
        "generation": dep["metadata"]["generation"],
        "annotations": dep["metadata"].get("annotations"),
        "spec": dep["spec"],
    }


async def make_revision_2(api_client: Any, ns: str, make_deployment: MakeDeployment) -> None:
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    await set_image(api_client, ns, "img/a:2")
    await wait_for_revision(api_client, ns, "web", 2)


async def set_image(api_client: Any, ns: str, image: str) -> None:
    await patch_deployment(
        api_client,
        ns,
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
        STRATEGIC_MERGE_PATCH,
    )


async def create_pod(api_client: Any, ns: str, name: str, labels: dict[str, str]) -> Any:
    return await k8s.CoreV1Api(api_client).create_namespaced_pod(
        ns,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="img/p:1")]),
        ),
    )


async def pod_names(api_client: Any, ns: str, selector: str = "") -> set[str]:
    pods = await k8s.CoreV1Api(api_client).list_namespaced_pod(ns, label_selector=selector)
    return {p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp}


# --------------------------------------------------------------------------------------------
# rollout_restart


async def test_restart_stamps_template_and_controller_rolls_a_new_revision(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    action, target, params = RolloutRestart(), deployment(ns), RolloutRestart.Params()
    ctx = make_ctx(kube_admin, step=0)

    change = await action.preview(ctx, target, params)
    result = await action.run(ctx, target, params)

    assert result.outcome is Outcome.OK
    assert result.before == {"restartedAt": None}
    assert set(change.after) == set(result.after) == {"restartedAt"}
    restarted = datetime.datetime.fromisoformat(str(result.after["restartedAt"]))
    assert abs((datetime.datetime.now(datetime.UTC) - restarted).total_seconds()) < 60
    dep = await read(kube_admin, ns)
    assert dep.spec.template.metadata.annotations[RESTARTED_AT] == result.after["restartedAt"]
    assert dep.metadata.annotations[RUN_ID_ANNOTATION] == ctx.run_id
    assert "remediator" in {m.manager for m in dep.metadata.managed_fields}
    await wait_for_revision(kube_admin, ns, "web", 2)

    # The same step retried (a take-up after a crash) does not restart a second time; another
    # restart step does (tests/integration/test_kubernetes_steps.py).
    again = await action.run(ctx, target, params)
    assert again.outcome is Outcome.OK
    assert "already applied by this run before a restart" in again.message
    assert (await read(kube_admin, ns)).metadata.annotations[REVISION] == "2"


@pytest.mark.parametrize(
    ("strategy", "said"),
    [
        (None, ""),
        # The controller replaces no pod by itself: the record says so, where it said the
        # restart was done as for any other (kubectl writes the same and says "restarted").
        (
            "OnDelete",
            "; its updateStrategy is OnDelete, so no pod is replaced until it is deleted "
            "(a kubernetes.delete_pod step on the same target does that)",
        ),
    ],
)
async def test_restart_statefulset(
    kube_admin: Any, kube_namespace: str, strategy: str | None, said: str
) -> None:
    ns = kube_namespace
    update = k8s.V1StatefulSetUpdateStrategy(type=strategy) if strategy else None
    await make_db_stateful_set(kube_admin, ns, replicas=1, strategy=update)
    result = await RolloutRestart().run(
        make_ctx(kube_admin), Target("StatefulSet", ns, "db"), RolloutRestart.Params()
    )
    assert result.outcome is Outcome.OK
    assert result.message == (
        f"restart StatefulSet {ns}/db: set pod template annotation {RESTARTED_AT} to the time "
        f"of the restart{said}"
    )
    sts = await k8s.AppsV1Api(kube_admin).read_namespaced_stateful_set("db", ns)
    assert sts.spec.template.metadata.annotations[RESTARTED_AT] == result.after["restartedAt"]


async def test_restart_refuses_paused_deployment(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    await make_deployment("web", paused=True)
    before = await snapshot(kube_admin, kube_namespace)
    with pytest.raises(ActionRefused, match="can't restart paused deployment"):
        await RolloutRestart().run(
            make_ctx(kube_admin), deployment(kube_namespace), RolloutRestart.Params()
        )
    assert await snapshot(kube_admin, kube_namespace) == before


# --------------------------------------------------------------------------------------------
# scale


async def read_scale(api_client: Any, ns: str, name: str = "web") -> int:
    scale = await k8s.AppsV1Api(api_client).read_namespaced_deployment_scale(name, ns)
    return int(scale.spec.replicas)


async def test_scale_modes_clamp_and_restore(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    action, target = Scale(), deployment(ns)
    # Steps 0-3 of one run: a restore needs its run's scale record on the object.
    run = f"run-{uuid.uuid4().hex[:8]}"
    ctx = make_ctx(kube_admin, run_id=run, step=0)

    params = action.Params(replicas=3, max=5)
    change = await action.preview(ctx, target, params)
    result = await action.run(ctx, target, params)
    assert result.outcome is Outcome.OK
    assert result.before == {"replicas": 1} == change.before
    assert result.after == {"replicas": 3} == change.after
    assert await read_scale(kube_admin, ns) == 3

    ctx = make_ctx(kube_admin, run_id=run, step=1)
    result = await action.run(ctx, target, action.Params(delta=-1, min=1, max=5))
    assert (result.before, result.after) == ({"replicas": 3}, {"replicas": 2})
    assert await read_scale(kube_admin, ns) == 2

    ctx = make_ctx(kube_admin, run_id=run, step=2)
    result = await action.run(ctx, target, action.Params(factor=4.0, max=6))  # 8 -> clamped
    assert result.after == {"replicas": 6}
    assert await read_scale(kube_admin, ns) == 6

    ctx = make_ctx(kube_admin, run_id=run, step=3)
    result = await action.run(ctx, target, action.Params(replicas=6, max=6))
    assert result.outcome is Outcome.NOOP

    # The run's own scale step went 1 -> 6; its restore takes those 5 off the live count.
    own = {"kubernetes.scale": {"before": {"replicas": 1}, "after": {"replicas": 6}}}
    restore = make_ctx(kube_admin, run_id=run, recorded=own, step=0, phase="resolve")
    result = await action.run(restore, target, action.Params(restore=True, min=1, max=6))
    assert (result.outcome, result.after) == (Outcome.OK, {"replicas": 1})
    assert await read_scale(kube_admin, ns) == 1
    dep = await read(kube_admin, ns)
    assert "remediator" in {m.manager for m in dep.metadata.managed_fields}
    # The workload is stamped in the same write as the count, with the count written (what a
    # later restore checks the live count against).
    assert dep.metadata.annotations[RUN_ID_ANNOTATION] == restore.run_id
    assert dep.metadata.annotations["remediator.io/action"] == "kubernetes.scale"
    assert dep.metadata.annotations["remediator.io/replicas"] == "1"


async def test_scale_up_never_lowers_a_workload_above_max(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The shipped HighErrorRate rule's step (replicas x 1.5 within [2, 10]) on a Deployment
    someone already runs at 12: it is left at 12, saying why, and the run's restore has
    nothing to undo. Clamping alone scaled it down to 10 in the middle of an error spike."""
    ns = kube_namespace
    await make_deployment("web", replicas=12)
    action, target, ctx = Scale(), deployment(ns), make_ctx(kube_admin)
    result = await action.run(ctx, target, action.Params(factor=1.5, min=2, max=10))
    assert result.outcome is Outcome.NOOP
    assert "has 12 replicas, already at or above max 10: a raise never lowers it" in (
        result.message
    )
    assert await read_scale(kube_admin, ns) == 12
    own = {"kubernetes.scale": {"before": result.before, "after": result.after}}
    restore = make_ctx(kube_admin, recorded=own)
    result = await action.run(restore, target, action.Params(restore=True, min=1, max=10))
    assert (result.outcome, result.message.endswith("nothing to undo")) == (Outcome.NOOP, True)
    assert await read_scale(kube_admin, ns) == 12


async def test_a_lowering_reaches_zero_replicas_only_with_an_explicit_min_0(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """``factor: 0.5`` on 1 replica with the default min 0 scaled the Deployment to 0 (an
    outage). Such a step is refused when the rule is read; ``min: 1`` keeps the pod, saying
    so, and only an explicit ``min: 0`` scales to zero."""
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    registry = default_registry()
    with pytest.raises(ParamsError, match=r"a lowering \(factor 0\.5\) needs min"):
        registry.parse_params(Scale.name, {"factor": 0.5, "max": 5})
    action, target = Scale(), deployment(ns)

    kept = registry.parse_params(Scale.name, {"factor": 0.5, "min": 1, "max": 5})
    result = await action.run(make_ctx(kube_admin), target, kept)
    assert result.outcome is Outcome.NOOP
    assert "has 1 replicas, already at or below min 1: a lowering never raises it" in (
        result.message
    )
    assert await read_scale(kube_admin, ns) == 1

    zero = registry.parse_params(Scale.name, {"factor": 0.5, "min": 0, "max": 5})
    result = await action.run(make_ctx(kube_admin), target, zero)
    assert (result.outcome, result.after) == (Outcome.OK, {"replicas": 0})
    # The Deployment's own spec: the Scale subresource leaves a count of 0 out (omitempty).
    assert (await read(kube_admin, ns)).spec.replicas == 0


async def test_a_restore_never_goes_past_the_count_its_run_started_from(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The run scaled 22 -> 27; its restore step's own max (10) is below both: it undoes the
    +5 (to 22), not "down to max" (to 10, removing 17 pods it never added)."""
    ns = kube_namespace
    await make_deployment("web", replicas=22)
    action, target = Scale(), deployment(ns)
    ctx = make_ctx(kube_admin, step=0)
    scaled = await action.run(ctx, target, action.Params(delta=5, max=30))
    assert scaled.after == {"replicas": 27}
    own = {"kubernetes.scale": {"before": scaled.before, "after": scaled.after}}
    restore = make_ctx(kube_admin, run_id=ctx.run_id, recorded=own, step=0, phase="resolve")
    result = await action.run(restore, target, action.Params(restore=True, max=10))
    assert (result.outcome, result.after) == (Outcome.OK, {"replicas": 22})
    assert result.message.endswith("from 27 to 22 replicas (undoing this run's +5)")
    assert await read_scale(kube_admin, ns) == 22


async def test_scale_resends_over_a_status_only_conflict(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """Something else bumps the resourceVersion but not replicas: the PUT is resent."""
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    plan = await Scale()._checked_plan(
        make_ctx(kube_admin), deployment(ns), Scale.Params(replicas=2, max=3)
    )
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"labels": {"touched": "yes"}}}, MERGE_PATCH
    )
    assert plan.write is not None
    written = await plan.write()
    assert written["spec"]["replicas"] == 2
    assert await read_scale(kube_admin, ns) == 2


async def test_scale_refuses_when_replicas_changed_since_the_plan(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    plan = await Scale()._checked_plan(
        make_ctx(kube_admin), deployment(ns), Scale.Params(delta=1, max=5)
    )
    await patch_deployment(kube_admin, ns, "web", {"spec": {"replicas": 4}}, MERGE_PATCH)
    assert plan.write is not None
    with pytest.raises(ActionRefused, match="changed concurrently from 1 to 4"):
        await plan.write()
    assert await read_scale(kube_admin, ns) == 4


async def test_scale_restore_without_a_change_of_its_run_is_a_noop(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    # No scale step of the run changed the replicas (none, a noop at max, a dry run).
    await make_deployment("web", replicas=2)
    result = await Scale().run(
        make_ctx(kube_admin), deployment(kube_namespace), Scale.Params(restore=True, max=3)
    )
    assert result.outcome is Outcome.NOOP
    assert result.message.endswith("nothing to undo")
    assert await read_scale(kube_admin, kube_namespace) == 2


async def test_scale_refuses_hpa_managed_target(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    await k8s.AutoscalingV2Api(kube_admin).create_namespaced_horizontal_pod_autoscaler(
        ns,
        k8s.V2HorizontalPodAutoscaler(
            metadata=k8s.V1ObjectMeta(name="web-hpa"),
            spec=k8s.V2HorizontalPodAutoscalerSpec(
                scale_target_ref=k8s.V2CrossVersionObjectReference(
                    api_version="apps/v1", kind="Deployment", name="web"
                ),
                min_replicas=1,
                max_replicas=4,
            ),
        ),
    )
    with pytest.raises(ActionRefused, match=f"HorizontalPodAutoscaler {ns}/web-hpa"):
        await Scale().run(make_ctx(kube_admin), deployment(ns), Scale.Params(replicas=3, max=5))
    assert await read_scale(kube_admin, ns) == 1


# --------------------------------------------------------------------------------------------
# set_resources, set_env


async def test_set_resources_changes_only_the_named_container(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", containers=two_containers())
    action, target = SetResources(), deployment(ns)
    params = default_registry().parse_params(
        "kubernetes.set_resources",
        {
            "container": "app",
            "memory_limit": {"factor": 1.5, "max": "4Gi"},
            "cpu_limit": {"value": "1000m"},
            "memory_request": {"value": "0.25Gi"},
        },
    )
    ctx = make_ctx(kube_admin, step=0)
    change = await action.preview(ctx, target, params)
    result = await action.run(ctx, target, params)

    assert result.outcome is Outcome.OK
    expected_after = {
        "container": "app",
        "limits": {"memory": "384Mi", "cpu": "1"},
        "requests": {"memory": "256Mi"},
    }
    assert change.after == result.after == expected_after
    assert result.before == {
        "container": "app",
        "limits": {"memory": "256Mi", "cpu": "500m"},
        "requests": {"memory": "128Mi"},
    }
    dep = await read(kube_admin, ns)
    assert container(dep, "app").resources.limits == {"memory": "384Mi", "cpu": "1"}
    assert container(dep, "app").resources.requests == {"memory": "256Mi"}
    assert container(dep, "sidecar").resources.limits == {"memory": "64Mi"}
    assert container(dep, "sidecar").resources.requests is None
    assert dep.metadata.annotations[RUN_ID_ANNOTATION] == ctx.run_id
    await wait_for_revision(kube_admin, ns, "web", 2)

    # The same step again (a take-up after a crash) would compound the factor: it reports
    # its first write instead.
    again = await action.run(ctx, target, params)
    assert again.outcome is Outcome.OK
    assert "already applied by this run before a restart" in again.message
    assert container(await read(kube_admin, ns), "app").resources.limits["memory"] == "384Mi"


@pytest.mark.parametrize(
    ("action", "raw"),
    [
        (SetResources(), {"container": "app", "memory_limit": {"factor": 1.5, "max": "4Gi"}}),
        (SetEnv(), {"container": "app", "name": "POOL_SIZE", "value": "5"}),
    ],
    ids=["set_resources", "set_env"],
)
async def test_an_approved_container_change_is_refused_once_the_container_changed(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    action: Any,
    raw: dict[str, Any],
) -> None:
    # The approval binds the values the step replaces: someone else's change in between
    # (here: a new memory limit and the variable set by hand) refuses the approved step.
    ns = kube_namespace
    await make_deployment("web", containers=two_containers())
    target = deployment(ns)
    params = default_registry().parse_params(action.name, raw)
    previewed = await action.preview(make_ctx(kube_admin), target, params)
    assert previewed.preconditions == previewed.before
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "resources": {"limits": {"memory": "300Mi"}},
                            "env": [{"name": "POOL_SIZE", "value": "7"}],
                        }
                    ]
                }
            }
        }
    }
    await k8s.AppsV1Api(kube_admin).patch_namespaced_deployment("web", ns, patch)
    approved = ActionContext(
        run_id="r",
        dry_run=False,
        clients=Clients({"kubernetes": kube_admin}),
        approved=dict(previewed.preconditions),
    )

    with pytest.raises(ActionRefused, match="changed since the step was approved"):
        await action.run(approved, target, params)
    app = container(await read(kube_admin, ns), "app")
    assert app.resources.limits["memory"] == "300Mi"
    assert ("POOL_SIZE", "7") in [(e.name, e.value) for e in app.env or []]


async def test_set_resources_factor_is_capped(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    await make_deployment("web", containers=two_containers())
    params = SetResources.Params.model_validate(
        {"container": "app", "memory_limit": {"factor": 3, "max": "700Mi"}}
    )
    result = await SetResources().run(make_ctx(kube_admin), deployment(kube_namespace), params)
    assert result.after == {"container": "app", "limits": {"memory": "700Mi"}}


async def test_set_resources_unknown_container_names_the_real_ones(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    await make_deployment("web", containers=two_containers())
    params = SetResources.Params.model_validate(
        {"container": "nope", "memory_limit": {"value": "1Gi"}}
    )
    with pytest.raises(ActionRefused, match=r"'nope' not found .* app, sidecar"):
        await SetResources().run(make_ctx(kube_admin), deployment(kube_namespace), params)


async def test_set_resources_rejected_by_api_is_refused(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """An API server's 422 becomes a refusal with its message. A request above its limit is
    refused before the write now (test_kubernetes_container_edges.py), so the 422 comes from a
    ValidatingAdmissionPolicy of the namespace, as a cluster's own ceiling would (``reason:
    Invalid`` answers 422)."""
    await make_deployment("web", containers=two_containers())
    admission = k8s.AdmissionregistrationV1Api(kube_admin)
    name = f"memory-ceiling-{kube_namespace}"
    limits = "object.spec.template.spec.containers.all(c, !has(c.resources.limits) || "
    ceiling = "!('memory' in c.resources.limits) || "
    compare = "quantity(c.resources.limits.memory).compareTo(quantity('2Gi')) <= 0)"
    policy: Any = {  # a dict is sent as it is; the model classes add nothing here
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["deployments"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": limits + ceiling + compare,
                    "message": "memory limits above 2Gi are not allowed here",
                    "reason": "Invalid",
                }
            ],
        },
    }
    binding: Any = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": kube_namespace}
                }
            },
        },
    }
    await admission.create_validating_admission_policy(policy)
    await admission.create_validating_admission_policy_binding(binding)
    params = SetResources.Params.model_validate(
        {"container": "app", "memory_limit": {"value": "3Gi"}}
    )
    apps = k8s.AppsV1Api(kube_admin)

    async def in_force() -> bool:
        # The policy is compiled and bound asynchronously: a server-side dry run of a template
        # over the ceiling tells when it refuses.
        body = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "app", "resources": {"limits": {"memory": "3Gi"}}}]
                    }
                }
            }
        }
        try:
            await apps.patch_namespaced_deployment("web", kube_namespace, body, dry_run="All")
        except k8s.ApiException as exc:
            return exc.status == 422
        return False

    try:
        await eventually(in_force, what="the admission policy refusing")
        with pytest.raises(ActionRefused, match=r"HTTP 422.*memory limits above 2Gi"):
            await SetResources().run(make_ctx(kube_admin), deployment(kube_namespace), params)
    finally:
        await admission.delete_validating_admission_policy_binding(name)
        await admission.delete_validating_admission_policy(name)


async def test_set_env_adds_variable_to_one_container(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", containers=two_containers())
    action, target = SetEnv(), deployment(ns)
    params = SetEnv.Params(container="app", name="POOL_SIZE", value="20")
    ctx = make_ctx(kube_admin)

    change = await action.preview(ctx, target, params)
    result = await action.run(ctx, target, params)

    assert result.outcome is Outcome.OK
    assert result.before == {"container": "app", "name": "POOL_SIZE", "value": None}
    assert change.after == result.after == {"container": "app", "name": "POOL_SIZE", "value": "20"}
    dep = await read(kube_admin, ns)
    env = {e.name: e.value for e in container(dep, "app").env}
    assert env == {"KEEP": "1", "POOL_SIZE": "20"}
    assert container(dep, "sidecar").env is None
    assert (await action.run(ctx, target, params)).outcome is Outcome.NOOP


async def test_set_env_replaces_a_value_from_reference(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    from_field = k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.name"))
    await make_deployment(
        "web",
        containers=[
            k8s.V1Container(
                name="app",
                image="img/a:1",
                env=[k8s.V1EnvVar(name="POD", value_from=from_field)],
            )
        ],
    )
    result = await SetEnv().run(
        make_ctx(kube_admin), deployment(ns), SetEnv.Params(container="app", name="POD", value="x")
    )
    assert result.before["valueFrom"] == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
    }
    assert result.after == {"container": "app", "name": "POD", "value": "x"}
    env = container(await read(kube_admin, ns), "app").env
    assert [(e.name, e.value, e.value_from) for e in env] == [("POD", "x", None)]


# --------------------------------------------------------------------------------------------
# rollout_undo


async def test_undo_lands_on_the_bound_revision(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    action, target = RolloutUndo(), deployment(ns)
    ctx = make_ctx(kube_admin)
    rs_rev1 = (await owned_replica_sets(kube_admin, ns, "web"))[0]

    change = await action.preview(ctx, target, RolloutUndo.Params())
    assert change.preconditions == {
        "current_revision": "2",
        "to_revision": "1",
        "replicaset": rs_rev1.metadata.name,
    }
    # How an approval is to bind the previewed revisions into the params (nothing in the
    # service does it yet: the pipeline calls run() with the rule's params).
    bound = RolloutUndo.Params(expected_revision=2, to_revision=1)
    result = await action.run(ctx, target, bound)

    assert result.outcome is Outcome.OK
    assert result.after == change.after
    assert result.after["images"] == {"app": "img/a:1"}
    assert result.before == {"revision": 2, "images": {"app": "img/a:2"}}
    dep = await read(kube_admin, ns)
    assert container(dep, "app").image == "img/a:1"
    assert "pod-template-hash" not in dep.spec.template.metadata.labels
    assert dep.metadata.annotations[RUN_ID_ANNOTATION] == ctx.run_id
    await wait_for_revision(kube_admin, ns, "web", 3)

    # Running the same bound step again must not flip back to a:2.
    with pytest.raises(ActionRefused, match="revision changed"):
        await action.run(ctx, target, bound)
    assert container(await read(kube_admin, ns), "app").image == "img/a:1"


async def test_undo_refuses_when_revision_moved_after_approval(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    change = await RolloutUndo().preview(make_ctx(kube_admin), deployment(ns), RolloutUndo.Params())
    bound = RolloutUndo.Params(
        expected_revision=int(change.preconditions["current_revision"]),
        to_revision=int(change.preconditions["to_revision"]),
    )
    await set_image(kube_admin, ns, "img/a:3")
    await wait_for_revision(kube_admin, ns, "web", 3)

    with pytest.raises(ActionRefused, match="revision changed"):
        await RolloutUndo().run(make_ctx(kube_admin), deployment(ns), bound)
    assert container(await read(kube_admin, ns), "app").image == "img/a:3"


async def test_undo_json_patch_test_op_catches_a_race(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The change lands between the plan's read and the write: the API's `test` op refuses."""
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    action = RolloutUndo()
    plan = await action._checked_plan(make_ctx(kube_admin), deployment(ns), RolloutUndo.Params())
    await set_image(kube_admin, ns, "img/a:3")
    await wait_for_revision(kube_admin, ns, "web", 3)
    assert plan.write is not None

    with pytest.raises(ActionRefused, match="revision changed"):
        await plan.write()
    assert container(await read(kube_admin, ns), "app").image == "img/a:3"


async def test_undo_refusals(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    ctx = make_ctx(kube_admin)
    with pytest.raises(ActionRefused, match="no previous revision"):
        await RolloutUndo().run(ctx, deployment(ns), RolloutUndo.Params())
    with pytest.raises(ActionRefused, match="no rollout history found for revision 7"):
        await RolloutUndo().run(ctx, deployment(ns), RolloutUndo.Params(to_revision=7))
    await patch_deployment(kube_admin, ns, "web", {"spec": {"paused": True}}, MERGE_PATCH)
    with pytest.raises(ActionRefused, match="can't roll back paused deployment"):
        await RolloutUndo().run(ctx, deployment(ns), RolloutUndo.Params())
    with pytest.raises(ActionRefused, match="acts on Deployment, not StatefulSet"):
        await RolloutUndo().run(ctx, Target("StatefulSet", ns, "web"), RolloutUndo.Params())


# --------------------------------------------------------------------------------------------
# delete_pod


async def pods_by_uid(api_client: Any, ns: str, selector: str) -> dict[str, str]:
    """uid -> name of the pods matching ``selector`` that are not being deleted."""
    pods = await k8s.CoreV1Api(api_client).list_namespaced_pod(ns, label_selector=selector)
    return {
        p.metadata.uid: p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp
    }


async def test_delete_pod_removes_exactly_the_named_pod(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """A pod of a Deployment's ReplicaSet, named as the target: that pod goes, its siblings
    stay, and the ReplicaSet replaces it (a bare pod is refused: test_kubernetes_delete_pod)."""
    ns = kube_namespace
    await make_deployment("web", replicas=3)
    pods = await eventually(
        lambda: pods_by_uid(kube_admin, ns, "app=web"), lambda pods: len(pods) == 3
    )
    victim_uid, victim = sorted(pods.items(), key=lambda item: item[1])[1]
    action, target = DeletePod(), Target("Pod", ns, victim)
    ctx = make_ctx(kube_admin)

    change = await action.preview(ctx, target, DeletePod.Params())
    result = await action.run(ctx, target, DeletePod.Params())

    assert result.outcome is Outcome.OK
    assert change.after == result.after == {"deleted": [victim]}
    assert result.before == {"pods": [victim]}
    after = await eventually(
        lambda: pods_by_uid(kube_admin, ns, "app=web"),
        lambda now: len(now) == 3 and victim_uid not in now,
    )
    assert set(pods) - {victim_uid} < set(after)  # the siblings are the same pods
    assert (await action.run(ctx, target, DeletePod.Params())).outcome is Outcome.NOOP


async def test_delete_pod_of_deployment_deletes_at_most_max_pods(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=3)
    await create_pod(kube_admin, ns, "stranger", {"app": "other"})
    pods = await eventually(
        lambda: pod_names(kube_admin, ns, "app=web"), lambda names: len(names) == 3
    )

    result = await DeletePod().run(
        make_ctx(kube_admin), deployment(ns), DeletePod.Params(max_pods=2)
    )
    assert result.outcome is Outcome.OK
    deleted = set(result.after["deleted"])
    assert len(deleted) == 2
    assert deleted <= pods
    remaining = await pod_names(kube_admin, ns)
    assert "stranger" in remaining
    assert not deleted & remaining

    # A named pod that is not the Deployment's is never deleted.
    result = await DeletePod().run(
        make_ctx(kube_admin), deployment(ns), DeletePod.Params(pod="stranger")
    )
    assert result.outcome is Outcome.NOOP
    assert "stranger" in await pod_names(kube_admin, ns)


# --------------------------------------------------------------------------------------------
# dry run: the server validates, nothing changes, and it reports what run() would produce


async def _setup_for(
    action: Action, api_client: Any, ns: str, make_deployment: MakeDeployment
) -> tuple[Target, Any]:
    registry = default_registry()
    if isinstance(action, RolloutUndo):
        await make_revision_2(api_client, ns, make_deployment)
        return deployment(ns), registry.parse_params(action.name, {})
    if isinstance(action, DeletePod):
        await make_deployment("web")
        (victim,) = await eventually(
            lambda: pod_names(api_client, ns, "app=web"),
            lambda names: len(names) == 1,
        )
        return Target("Pod", ns, victim), registry.parse_params(action.name, {})
    await make_deployment("web", containers=two_containers())
    raw: dict[str, dict[str, Any]] = {
        "kubernetes.rollout_restart": {},
        "kubernetes.scale": {"replicas": 3, "max": 5},
        "kubernetes.set_resources": {"container": "app", "memory_limit": {"value": "1Gi"}},
        "kubernetes.set_env": {"container": "app", "name": "X", "value": "y"},
    }
    return deployment(ns), registry.parse_params(action.name, raw[action.name])


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.name)
async def test_dry_run_changes_nothing(
    action: Action, kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    target, params = await _setup_for(action, kube_admin, ns, make_deployment)
    if target.kind == "Deployment":
        before: Any = await snapshot(kube_admin, ns)
    else:
        before = await pod_names(kube_admin, ns)

    ctx = make_ctx(kube_admin, dry_run=True)
    change = await action.preview(ctx, target, params)
    result = await action.run(ctx, target, params)

    assert result.outcome is Outcome.DRY_RUN
    assert result.before == change.before
    if action.name == "kubernetes.rollout_restart":
        assert set(result.after) == set(change.after)  # the timestamp is taken at write time
    else:
        assert result.after == change.after
    if target.kind == "Deployment":
        assert await snapshot(kube_admin, ns) == before
    else:
        assert await pod_names(kube_admin, ns) == before


# --------------------------------------------------------------------------------------------
# errors: missing target, forbidden, invalid params


@pytest.mark.parametrize(
    ("action", "raw"),
    [
        (RolloutRestart(), {}),
        (Scale(), {"replicas": 2, "max": 3}),
        (SetResources(), {"container": "app", "cpu_limit": {"value": "1"}}),
        (SetEnv(), {"container": "app", "name": "A", "value": "b"}),
        (RolloutUndo(), {}),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
async def test_missing_target_is_refused(
    action: Action, raw: dict[str, Any], kube_admin: Any, kube_namespace: str
) -> None:
    params = action.Params.model_validate(raw)
    with pytest.raises(ActionRefused, match=f"^Deployment {kube_namespace}/ghost not found$"):
        await action.run(make_ctx(kube_admin), deployment(kube_namespace, "ghost"), params)


async def test_forbidden_names_verb_and_resource(
    control_plane: ControlPlane,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    tmp_path: Path,
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    token = await control_plane.service_account_token(ns, "nobody")
    kubeconfig = control_plane.write_kubeconfig_for_token(token, tmp_path / "kubeconfig")
    nobody = await api_client_from_kubeconfig(kubeconfig)
    try:
        with pytest.raises(ActionRefused) as excinfo:
            await RolloutRestart().run(make_ctx(nobody), deployment(ns), RolloutRestart.Params())
        message = excinfo.value.message
        assert message.startswith("forbidden: ")
        assert f"system:serviceaccount:{ns}:nobody" in message
        assert 'cannot get resource "deployments"' in message

        # scale reads (and patches) the Deployment itself: replicas and its record in one write.
        with pytest.raises(ActionRefused, match=r'cannot get resource "deployments" in API'):
            await Scale().run(make_ctx(nobody), deployment(ns), Scale.Params(replicas=2, max=3))
    finally:
        await nobody.close()
