"""``kubernetes.set_env`` and ``kubernetes.set_resources`` on edge cases, against a real
kube-apiserver, with the pinned kubectl as the reference.

- A variable its container defines twice: the API server keeps such an ``env`` (it warns),
  and the kubelet gives the container the last one. A strategic merge patch keyed by name
  changes only the first, so the step used to report the value set while the container kept
  the old one.
- A paused Deployment: its controller rolls nothing out, so an edit is refused, as a
  restart is.
- A StatefulSet or DaemonSet whose ``updateStrategy`` is ``OnDelete``, or a StatefulSet
  whose rolling update has a ``partition``: the template changes and no pod is replaced, or
  only some; the step's record says so, a restart's too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import Action, ActionRefused, Outcome
from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.restart import RolloutRestart
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_fixtures import MakeDeployment, first_step_ctx, make_db_stateful_set
from tests.support.kubectl import run_kubectl

pytestmark = pytest.mark.kube


def twice_defined() -> list[Any]:
    """One ``app`` container whose ``POOL`` is defined twice: the container runs with 8."""
    env = [
        k8s.V1EnvVar(name="POOL", value="4"),
        k8s.V1EnvVar(name="KEEP", value="1"),
        k8s.V1EnvVar(name="POOL", value="8"),
    ]
    return [k8s.V1Container(name="app", image="img/a:1", env=env)]


async def env_of(kube: Any, ns: str, name: str) -> list[tuple[str, str]]:
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment(name, ns)
    return [(e.name, e.value) for e in dep.spec.template.spec.containers[0].env or []]


def effective(env: list[tuple[str, str]]) -> dict[str, str]:
    """What the container runs with: the kubelet lets a later definition win."""
    return dict(env)


async def test_set_env_on_a_twice_defined_variable_never_reports_a_value_it_did_not_set(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    control_plane: ControlPlane,
    kubectl: Path,
) -> None:
    ns, config = kube_namespace, control_plane.admin_kubeconfig
    await make_deployment("by-kubectl", containers=twice_defined())
    await make_deployment("web", containers=twice_defined())
    run_kubectl(
        kubectl, "--kubeconfig", str(config), "-n", ns, "set", "env", "deploy/by-kubectl",
        "-c", "app", "POOL=20",
    )  # fmt: skip
    # kubectl rewrites the list: one POOL, the new value, which the container gets.
    assert effective(await env_of(kube_admin, ns, "by-kubectl"))["POOL"] == "20"

    before = await env_of(kube_admin, ns, "web")
    params = SetEnv.Params(container="app", name="POOL", value="20")
    with pytest.raises(ActionRefused) as refused:
        await SetEnv().run(first_step_ctx(kube_admin), Target("Deployment", ns, "web"), params)
    assert "POOL is defined 2 times in container app" in refused.value.message
    assert "remove the duplicate definitions" in refused.value.message
    assert not refused.value.may_have_acted
    assert await env_of(kube_admin, ns, "web") == before


async def test_set_env_adds_a_new_variable_after_the_others_as_kubectl_does(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    control_plane: ControlPlane,
    kubectl: Path,
) -> None:
    # The kubelet expands $(HOST) only from variables defined before the one that uses it: a
    # new variable the API server put first (a merge patch's new item) kept it literal text.
    ns, config = kube_namespace, control_plane.admin_kubeconfig
    env = [k8s.V1EnvVar(name="HOST", value="db"), k8s.V1EnvVar(name="PORT", value="5432")]
    containers = [k8s.V1Container(name="app", image="img/a:1", env=env)]
    await make_deployment("by-kubectl", containers=containers)
    await make_deployment("web", containers=containers)
    run_kubectl(
        kubectl, "--kubeconfig", str(config), "-n", ns, "set", "env", "deploy/by-kubectl",
        "-c", "app", "DSN=$(HOST):$(PORT)",
    )  # fmt: skip
    wanted = [("HOST", "db"), ("PORT", "5432"), ("DSN", "$(HOST):$(PORT)")]
    assert await env_of(kube_admin, ns, "by-kubectl") == wanted

    params = SetEnv.Params(container="app", name="DSN", value="$(HOST):$(PORT)")
    target = Target("Deployment", ns, "web")
    result = await SetEnv().run(first_step_ctx(kube_admin), target, params)
    assert result.outcome is Outcome.OK
    assert await env_of(kube_admin, ns, "web") == wanted
    # A variable it has keeps its place.
    again = SetEnv.Params(container="app", name="HOST", value="db2")
    await SetEnv().run(first_step_ctx(kube_admin), target, again)
    assert await env_of(kube_admin, ns, "web") == [("HOST", "db2"), *wanted[1:]]


@pytest.mark.parametrize(
    ("action", "params"),
    [
        (SetEnv(), SetEnv.Params(container="app", name="POOL", value="20")),
        (
            SetResources(),
            SetResources.Params.model_validate(
                {"container": "app", "memory_limit": {"value": "512Mi"}}
            ),
        ),
    ],
)
async def test_a_container_edit_of_a_paused_deployment_is_refused(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    action: Action,
    params: Any,
) -> None:
    """The edit was written and reported done while the paused Deployment's controller rolled
    nothing out: no pod ran with it, and it would have rolled out later with the owner's
    gathered changes. Refused as a restart of a paused Deployment is."""
    ns = kube_namespace
    await make_deployment(
        "web", containers=[k8s.V1Container(name="app", image="img/a:1")], paused=True
    )
    apps = k8s.AppsV1Api(kube_admin)
    before = (await apps.read_namespaced_deployment("web", ns)).spec.template
    target = Target("Deployment", ns, "web")
    for call in (action.preview, action.run):
        with pytest.raises(ActionRefused) as refused:
            await call(first_step_ctx(kube_admin), target, params)
        assert refused.value.message == (
            f"Deployment {ns}/web is paused (spec.paused): a changed template would not roll "
            "out until someone resumes it, and would then roll out with whatever else changed "
            "meanwhile; not changing it"
        )
        assert not refused.value.may_have_acted
    assert (await apps.read_namespaced_deployment("web", ns)).spec.template == before


ON_DELETE = (
    "; its updateStrategy is OnDelete, so no pod is replaced until it is deleted "
    "(a kubernetes.delete_pod step on the same target does that)"
)


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
@pytest.mark.parametrize("strategy", ["OnDelete", "RollingUpdate"])
@pytest.mark.parametrize(
    ("action", "params"),
    [
        (SetEnv(), SetEnv.Params(container="db", name="POOL", value="20")),
        (
            SetResources(),
            SetResources.Params.model_validate(
                {"container": "db", "memory_limit": {"value": "512Mi"}}
            ),
        ),
    ],
)
async def test_a_container_edit_of_an_on_delete_workload_says_no_pod_is_replaced(
    kube_admin: Any, kube_namespace: str, kind: str, strategy: str, action: Action, params: Any
) -> None:
    """The step's record read "set POOL on container db" as on any workload, and the rule's
    verification then waited on pods that never got the new template."""
    ns = kube_namespace
    labels = {"app": "db"}
    template = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=labels),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="db", image="img/db:1")]),
    )
    selector = k8s.V1LabelSelector(match_labels=labels)
    if kind == "StatefulSet":
        update = k8s.V1StatefulSetUpdateStrategy(type=strategy)
        await make_db_stateful_set(kube_admin, ns, strategy=update)
    else:
        await k8s.AppsV1Api(kube_admin).create_namespaced_daemon_set(
            ns,
            k8s.V1DaemonSet(
                metadata=k8s.V1ObjectMeta(name="db"),
                spec=k8s.V1DaemonSetSpec(
                    update_strategy=k8s.V1DaemonSetUpdateStrategy(type=strategy),
                    selector=selector,
                    template=template,
                ),
            ),
        )
    target = Target(kind, ns, "db")
    preview = await action.preview(first_step_ctx(kube_admin), target, params)
    result = await action.run(first_step_ctx(kube_admin), target, params)
    assert result.outcome is Outcome.OK, result.message
    assert (ON_DELETE in preview.summary) is (strategy == "OnDelete")
    assert preview.summary.endswith(ON_DELETE if strategy == "OnDelete" else ("db", "512Mi"))
    assert result.message == preview.summary


@pytest.mark.parametrize(
    ("partition", "said"),
    [
        (0, ""),
        (
            2,
            "; its updateStrategy's partition is 2, so only the pods of ordinal 2 and up are "
            "replaced: a pod below the partition keeps the old template, even when deleted",
        ),
        (
            3,
            "; its updateStrategy's partition is 3, so no pod of its 3 is replaced: a pod below "
            "the partition keeps the old template, even when deleted",
        ),
    ],
)
@pytest.mark.parametrize(
    ("action", "params"),
    [
        (RolloutRestart(), RolloutRestart.Params()),
        (SetEnv(), SetEnv.Params(container="db", name="POOL", value="20")),
        (
            SetResources(),
            SetResources.Params.model_validate(
                {"container": "db", "memory_limit": {"value": "512Mi"}}
            ),
        ),
    ],
)
async def test_a_template_edit_of_a_partitioned_statefulset_says_which_pods_get_it(
    kube_admin: Any,
    kube_namespace: str,
    action: Action,
    params: Any,
    partition: int,
    said: str,
) -> None:
    """A partition parks a staged rollout: the StatefulSet controller replaces only the pods
    of ordinal ``partition`` and up, and recreates one below it from the old template even
    when it is deleted. The record read as a full rollout ("restart StatefulSet shop/db")."""
    ns = kube_namespace
    rolling = k8s.V1RollingUpdateStatefulSetStrategy(partition=partition)
    update = k8s.V1StatefulSetUpdateStrategy(type="RollingUpdate", rolling_update=rolling)
    await make_db_stateful_set(kube_admin, ns, replicas=3, strategy=update)
    target = Target("StatefulSet", ns, "db")
    preview = await action.preview(first_step_ctx(kube_admin), target, params)
    result = await action.run(first_step_ctx(kube_admin), target, params)
    assert result.outcome is Outcome.OK, result.message
    assert preview.summary.endswith(said or ("db", "512Mi", "the time of the restart"))
    assert ("partition" in preview.summary) is bool(said)
    assert result.message == preview.summary


@pytest.mark.parametrize(
    ("change", "said"),
    [
        # A request raised by a factor past the limit the same step raises less.
        (
            {
                "memory_request": {"factor": 2, "max": "8Gi"},
                "memory_limit": {"factor": 1.5, "max": "4Gi"},
            },
            "its memory request would be 2Gi, above its memory limit of 1536Mi",
        ),
        # A limit lowered below the request the step leaves as it is.
        (
            {"cpu_limit": {"factor": 0.25, "max": "4"}},
            "its cpu request would be 500m, above its cpu limit of 250m",
        ),
        # A value, as written in the rule.
        (
            {"memory_limit": {"value": "256Mi"}},
            "its memory request would be 1Gi, above its memory limit of 256Mi",
        ),
    ],
)
async def test_a_resource_change_that_puts_a_request_above_its_limit_is_refused_in_the_preview(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    change: dict[str, Any],
    said: str,
) -> None:
    """The API server refuses a container whose request is above its limit (422, "must be
    less than or equal to memory limit"). The step planned such a change anyway: the preview
    showed it (what an approver approves) and the write then failed. Refused in the plan, naming
    both values, and nothing is written."""
    ns = kube_namespace
    resources = k8s.V1ResourceRequirements(
        requests={"memory": "1Gi", "cpu": "500m"}, limits={"memory": "1Gi", "cpu": "1"}
    )
    await make_deployment(
        "web", containers=[k8s.V1Container(name="app", image="img/a:1", resources=resources)]
    )
    apps = k8s.AppsV1Api(kube_admin)
    before = (await apps.read_namespaced_deployment("web", ns)).spec.template
    action = SetResources()
    params = SetResources.Params.model_validate({"container": "app", **change})
    target = Target("Deployment", ns, "web")
    for call in (action.preview, action.run):
        with pytest.raises(ActionRefused) as refused:
            await call(first_step_ctx(kube_admin), target, params)
        assert refused.value.message == (
            f"container app of Deployment {ns}/web: {said}, which the API server refuses; "
            "not changing it"
        )
        assert not refused.value.may_have_acted
    assert (await apps.read_namespaced_deployment("web", ns)).spec.template == before


async def test_a_request_raised_up_to_its_raised_limit_is_written(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The other side of the refusal above: a request that ends at its limit is valid, and the
    same step raising both is written."""
    ns = kube_namespace
    resources = k8s.V1ResourceRequirements(requests={"memory": "1Gi"}, limits={"memory": "1Gi"})
    await make_deployment(
        "web", containers=[k8s.V1Container(name="app", image="img/a:1", resources=resources)]
    )
    params = SetResources.Params.model_validate(
        {
            "container": "app",
            "memory_request": {"factor": 1.5, "max": "8Gi"},
            "memory_limit": {"factor": 1.5, "max": "4Gi"},
        }
    )
    result = await SetResources().run(
        first_step_ctx(kube_admin), Target("Deployment", ns, "web"), params
    )
    assert result.outcome is Outcome.OK
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert dep.spec.template.spec.containers[0].resources.requests == {"memory": "1536Mi"}
    assert dep.spec.template.spec.containers[0].resources.limits == {"memory": "1536Mi"}
