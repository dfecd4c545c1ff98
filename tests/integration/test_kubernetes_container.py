"""``kubernetes.set_resources`` and ``kubernetes.set_env`` against a real kube-apiserver +
controller-manager: effects read back (edge cases: test_kubernetes_container_edges.py)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionContext, ActionRefused, Clients, Outcome
from remediations.kubernetes.api import RUN_ID_ANNOTATION
from remediations.kubernetes.container import SetEnv, SetResources
from remediations.registry import default_registry
from tests.support.kube_actions import container, deployment, make_ctx, read, two_containers
from tests.support.kube_fixtures import MakeDeployment, wait_for_revision
from tests.support.polling import eventually

pytestmark = pytest.mark.kube


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
