"""deploy/ applied by a real kubectl to a real kube-apiserver; its RBAC exercised.

kubectl comes from tests/support/kubectl.py (the rendering alone is tested in
tests/unit/test_deploy_render.py), the API server from hack/controlplane
(tests/support/kube.py). The ServiceAccount's token is minted with the TokenRequest API, and
every request below is made with it: the verbs each shipped action needs must work in the
bound namespace, everything else must be 403.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from tests.support.deploy_manifests import EXPECTED_PERMISSIONS
from tests.support.kube import ControlPlane, api_client_from_kubeconfig
from tests.support.kube_fixtures import (
    MakeDeployment,
    owned_replica_sets,
    wait_for_rollout_settled,
)
from tests.support.kubectl import render, run_kubectl
from tests.support.polling import eventually

pytestmark = pytest.mark.kube

APP_NS = "alert-remediator"
SA = "alert-remediator"
TARGET_NS = "apps"  # the example target namespace bound in deploy/base/rbac.yaml
EXTRA_NS = "payments"  # added by deploy/examples/extra-namespace
FIELD_MANAGER = "remediator"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
IMAGE = "registry.invalid/app:1"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


# -- applied to the API server ---------------------------------------------------------------------


def _namespace_yaml(*names: str) -> str:
    return yaml.safe_dump_all(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
    )


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, kubectl: Path) -> str:
    """deploy/ applied with `kubectl apply -k`, as deploy/README.md says; returns apply's
    stderr."""
    kubeconfig = str(control_plane.admin_kubeconfig)
    # The target namespaces exist before the remediator is installed.
    run_kubectl(
        kubectl,
        "--kubeconfig",
        kubeconfig,
        "apply",
        "-f",
        "-",
        stdin=_namespace_yaml(TARGET_NS, EXTRA_NS),
    )
    proc = run_kubectl(kubectl, "--kubeconfig", kubeconfig, "apply", "-k", "deploy/")
    return proc.stderr


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(control_plane: ControlPlane) -> AsyncIterator[Any]:
    api_client = await control_plane.admin_api_client()
    try:
        yield api_client
    finally:
        await api_client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def remediator(
    control_plane: ControlPlane, installed: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Any]:
    """An ApiClient authenticated as ServiceAccount alert-remediator/alert-remediator."""
    token = await control_plane.service_account_token(APP_NS, SA)
    path = control_plane.write_kubeconfig_for_token(
        token, tmp_path_factory.mktemp("sa") / "kubeconfig"
    )
    api_client = await api_client_from_kubeconfig(path)
    try:
        yield api_client
    finally:
        await api_client.close()


def _api(cls: type, api_client: Any) -> Any:
    # kubernetes_asyncio's typed signatures omit _content_type, which every patch here passes.
    return cls(api_client)


def _labels(name: str) -> dict[str, str]:
    return {"app": name}


def _template(name: str) -> k8s.V1PodTemplateSpec:
    return k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=_labels(name)),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="app", image=IMAGE)]),
    )


async def _ignore_conflict(call: Any) -> None:
    try:
        await call
    except ApiException as exc:
        if exc.status != 409:
            raise


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def targets(admin: Any, installed: str) -> dict[str, str]:
    """Workloads, an HPA, a Secret and a ConfigMap in the bound namespace, created as admin."""
    suffix = uuid.uuid4().hex[:6]
    names = {
        "deployment": f"web-{suffix}",
        "hpa_deployment": f"autoscaled-{suffix}",
        "statefulset": f"db-{suffix}",
        "daemonset": f"agent-{suffix}",
        "secret": f"creds-{suffix}",
        "configmap": f"cfg-{suffix}",
    }
    apps = _api(k8s.AppsV1Api, admin)
    core = _api(k8s.CoreV1Api, admin)
    for key in ("deployment", "hpa_deployment"):
        name = names[key]
        await apps.create_namespaced_deployment(
            TARGET_NS,
            k8s.V1Deployment(
                metadata=k8s.V1ObjectMeta(name=name),
                spec=k8s.V1DeploymentSpec(
                    replicas=1,
                    selector=k8s.V1LabelSelector(match_labels=_labels(name)),
                    template=_template(name),
                ),
            ),
        )
    name = names["statefulset"]
    await apps.create_namespaced_stateful_set(
        TARGET_NS,
        k8s.V1StatefulSet(
            metadata=k8s.V1ObjectMeta(name=name),
            spec=k8s.V1StatefulSetSpec(
                service_name=name,
                replicas=1,
                selector=k8s.V1LabelSelector(match_labels=_labels(name)),
                template=_template(name),
            ),
        ),
    )
    name = names["daemonset"]
    await apps.create_namespaced_daemon_set(
        TARGET_NS,
        k8s.V1DaemonSet(
            metadata=k8s.V1ObjectMeta(name=name),
            spec=k8s.V1DaemonSetSpec(
                selector=k8s.V1LabelSelector(match_labels=_labels(name)),
                template=_template(name),
            ),
        ),
    )
    await _api(k8s.AutoscalingV2Api, admin).create_namespaced_horizontal_pod_autoscaler(
        TARGET_NS,
        k8s.V2HorizontalPodAutoscaler(
            metadata=k8s.V1ObjectMeta(name=names["hpa_deployment"]),
            spec=k8s.V2HorizontalPodAutoscalerSpec(
                scale_target_ref=k8s.V2CrossVersionObjectReference(
                    api_version="apps/v1", kind="Deployment", name=names["hpa_deployment"]
                ),
                min_replicas=1,
                max_replicas=3,
            ),
        ),
    )
    await core.create_namespaced_secret(
        TARGET_NS,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=names["secret"]), string_data={"k": "v"}),
    )
    await core.create_namespaced_config_map(
        TARGET_NS,
        k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=names["configmap"]), data={"k": "v"}),
    )
    # rollout_undo needs a revision-1 ReplicaSet from the deployment controller.
    await eventually(lambda: owned_replica_sets(admin, TARGET_NS, names["deployment"]))
    return names


async def _status(call: Any) -> int:
    """HTTP status of a request: 200 on success, else the ApiException's status."""
    try:
        await call
    except ApiException as exc:
        return int(exc.status)
    return 200


async def test_apply_succeeds_and_pods_pass_restricted_pod_security(
    installed: str, admin: Any
) -> None:
    assert "Warning" not in installed, installed
    core = _api(k8s.CoreV1Api, admin)
    ns = await core.read_namespace(APP_NS)
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The ReplicaSet controller creates the pods through admission; with Pod Security
    # "restricted" enforced, a template that loosened the hardening would be refused here.

    async def pods() -> list[Any]:
        items = (
            await core.list_namespaced_pod(
                APP_NS, label_selector="app.kubernetes.io/name=alert-remediator"
            )
        ).items
        return list(items) if len(items) == 2 else []

    created = await eventually(pods)
    for pod in created:
        assert pod.spec.service_account_name == SA
        assert pod.spec.containers[0].security_context.read_only_root_filesystem is True
    cm = (await core.list_namespaced_config_map(APP_NS)).items
    assert any(c.metadata.name.startswith("alert-remediator-rules-") for c in cm)


async def test_rollout_restart_set_env_and_set_resources_verbs(
    remediator: Any, admin: Any, targets: dict[str, str]
) -> None:
    apps = _api(k8s.AppsV1Api, remediator)
    stamp = "2026-01-01T00:00:00Z"
    for kind, read, patch in (
        ("deployment", apps.read_namespaced_deployment, apps.patch_namespaced_deployment),
        ("statefulset", apps.read_namespaced_stateful_set, apps.patch_namespaced_stateful_set),
        ("daemonset", apps.read_namespaced_daemon_set, apps.patch_namespaced_daemon_set),
    ):
        name = targets[kind]
        current = await read(name, TARGET_NS)
        assert not getattr(current.spec, "paused", False)
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        # Server-side dry-run (REMEDIATOR_DRY_RUN) needs the same verb and changes nothing.
        await patch(
            name,
            TARGET_NS,
            body,
            field_manager=FIELD_MANAGER,
            dry_run="All",
            _content_type=STRATEGIC,
        )
        await patch(name, TARGET_NS, body, field_manager=FIELD_MANAGER, _content_type=STRATEGIC)
        # set_env / set_resources: strategic merge into the named container.
        container_patch = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "env": [{"name": "POOL_SIZE", "value": "5"}],
                                "resources": {"limits": {"memory": "256Mi"}},
                            }
                        ]
                    }
                }
            }
        }
        await patch(
            name, TARGET_NS, container_patch, field_manager=FIELD_MANAGER, _content_type=STRATEGIC
        )
        seen = await read(name, TARGET_NS)
        assert seen.spec.template.metadata.annotations[RESTARTED_AT] == stamp
        container = seen.spec.template.spec.containers[0]
        assert container.env[0].value == "5"
        assert container.resources.limits["memory"] == "256Mi"
        managers = {m.manager for m in seen.metadata.managed_fields}
        assert FIELD_MANAGER in managers


async def test_scale_verbs(remediator: Any, targets: dict[str, str]) -> None:
    apps = _api(k8s.AppsV1Api, remediator)
    # scale refuses HPA-managed targets: it must be able to list the HPAs.
    hpas = await _api(k8s.AutoscalingV2Api, remediator).list_namespaced_horizontal_pod_autoscaler(
        TARGET_NS
    )
    assert targets["hpa_deployment"] in {h.spec.scale_target_ref.name for h in hpas.items}
    await _api(k8s.AutoscalingV1Api, remediator).list_namespaced_horizontal_pod_autoscaler(
        TARGET_NS
    )
    for kind, read, patch, read_scale in (
        (
            "deployment",
            apps.read_namespaced_deployment,
            apps.patch_namespaced_deployment,
            apps.read_namespaced_deployment_scale,
        ),
        (
            "statefulset",
            apps.read_namespaced_stateful_set,
            apps.patch_namespaced_stateful_set,
            apps.read_namespaced_stateful_set_scale,
        ),
    ):
        name = targets[kind]
        # The action patches the workload: replicas, the resourceVersion it read (optimistic
        # concurrency) and its annotations in one request. The controller's own status
        # writes move the resourceVersion too, so (as the action does) a conflict is answered
        # by reading again; permission is what is tested here, not the race.
        for _ in range(10):
            obj = await read(name, TARGET_NS)
            assert obj.spec.replicas == 1
            version = obj.metadata.resource_version
            body = {"metadata": {"resourceVersion": version}, "spec": {"replicas": 2}}
            code = await _status(
                patch(name, TARGET_NS, body, field_manager=FIELD_MANAGER, _content_type=MERGE)
            )
            if code != 409:
                break
        assert code == 200
        assert (await read(name, TARGET_NS)).spec.replicas == 2
        # A stale resourceVersion is refused (409): a concurrent change is never overwritten.
        body = {"metadata": {"resourceVersion": version}, "spec": {"replicas": 4}}
        stale = patch(name, TARGET_NS, body, field_manager=FIELD_MANAGER, _content_type=MERGE)
        assert await _status(stale) == 409
        # The action no longer uses the /scale subresource, so the role does not allow it.
        assert await _status(read_scale(name, TARGET_NS)) == 403


async def test_rollout_undo_verbs(remediator: Any, admin: Any, targets: dict[str, str]) -> None:
    apps = _api(k8s.AppsV1Api, remediator)
    name = targets["deployment"]
    # Earlier tests changed this Deployment's template: the revision the patch's `test` names
    # is the one the controller bumps for that, so read it once the controller has caught up.
    await wait_for_rollout_settled(admin, TARGET_NS, name, timeout=60)
    dep = await apps.read_namespaced_deployment(name, TARGET_NS)
    selector = ",".join(f"{k}={v}" for k, v in dep.spec.selector.match_labels.items())
    replica_sets = (
        await apps.list_namespaced_replica_set(TARGET_NS, label_selector=selector)
    ).items
    owned = [
        rs
        for rs in replica_sets
        if any(ref.uid == dep.metadata.uid for ref in rs.metadata.owner_references or [])
    ]
    assert owned
    first = min(owned, key=lambda rs: int(rs.metadata.annotations[REVISION]))
    # The list carries the templates; reading one ReplicaSet is not granted.
    assert await _status(apps.read_namespaced_replica_set(first.metadata.name, TARGET_NS)) == 403
    template = admin.sanitize_for_serialization(first.spec.template)
    template["metadata"]["labels"].pop("pod-template-hash", None)
    current_revision = dep.metadata.annotations[REVISION]
    ops = [
        {
            "op": "test",
            "path": "/metadata/annotations/" + REVISION.replace("/", "~1"),
            "value": current_revision,
        },
        {"op": "replace", "path": "/spec/template", "value": template},
    ]
    undone = await apps.patch_namespaced_deployment(
        name, TARGET_NS, ops, field_manager=FIELD_MANAGER, _content_type=JSON_PATCH
    )
    assert undone.spec.template.spec.containers[0].image == IMAGE


async def test_delete_pod_verbs(remediator: Any, admin: Any) -> None:
    name = f"victim-{uuid.uuid4().hex[:6]}"
    await _api(k8s.CoreV1Api, admin).create_namespaced_pod(
        TARGET_NS,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, labels={"app": name}),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="app", image=IMAGE)]),
        ),
    )
    core = _api(k8s.CoreV1Api, remediator)
    pods = (await core.list_namespaced_pod(TARGET_NS, label_selector=f"app={name}")).items
    assert [p.metadata.name for p in pods] == [name]
    # Its preview counts down the budgets selecting the pods.
    await _api(k8s.PolicyV1Api, remediator).list_namespaced_pod_disruption_budget(TARGET_NS)
    pod = await core.read_namespaced_pod(name, TARGET_NS)
    eviction = k8s.V1Eviction(
        metadata=k8s.V1ObjectMeta(name=name, namespace=TARGET_NS),
        delete_options=k8s.V1DeleteOptions(
            preconditions=k8s.V1Preconditions(uid=pod.metadata.uid), grace_period_seconds=0
        ),
    )
    await core.create_namespaced_pod_eviction(name, TARGET_NS, eviction)
    assert await _status(_api(k8s.CoreV1Api, admin).read_namespaced_pod(name, TARGET_NS)) == 404


async def test_out_of_scope_requests_are_forbidden(
    remediator: Any,
    targets: dict[str, str],
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    apps = _api(k8s.AppsV1Api, remediator)
    core = _api(k8s.CoreV1Api, remediator)
    rbac = _api(k8s.RbacAuthorizationV1Api, remediator)
    dep = targets["deployment"]
    await make_deployment("unbound")  # in kube_namespace, which has no RoleBinding
    restart = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "x"}}}}}
    new_dep = k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="new"),
        spec=k8s.V1DeploymentSpec(
            selector=k8s.V1LabelSelector(match_labels=_labels("new")), template=_template("new")
        ),
    )
    requests = {
        "delete a Deployment": apps.delete_namespaced_deployment(dep, TARGET_NS),
        "create a Deployment": apps.create_namespaced_deployment(TARGET_NS, new_dep),
        "list Deployments": apps.list_namespaced_deployment(TARGET_NS),
        "list Deployments in all namespaces": apps.list_deployment_for_all_namespaces(),
        "delete a ReplicaSet's collection": apps.delete_collection_namespaced_replica_set(
            TARGET_NS
        ),
        "read a Secret": core.read_namespaced_secret(targets["secret"], TARGET_NS),
        "list Secrets": core.list_namespaced_secret(TARGET_NS),
        "read a ConfigMap": core.read_namespaced_config_map(targets["configmap"], TARGET_NS),
        "patch an HPA": _api(
            k8s.AutoscalingV2Api, remediator
        ).patch_namespaced_horizontal_pod_autoscaler(
            targets["hpa_deployment"],
            TARGET_NS,
            {"spec": {"maxReplicas": 9}},
            _content_type=MERGE,
        ),
        "create a Pod": core.create_namespaced_pod(
            TARGET_NS,
            k8s.V1Pod(
                metadata=k8s.V1ObjectMeta(name="intruder"),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="app", image=IMAGE)]),
            ),
        ),
        "get a Deployment in an unbound namespace": apps.read_namespaced_deployment(
            "unbound", kube_namespace
        ),
        "patch a Deployment in an unbound namespace": apps.patch_namespaced_deployment(
            "unbound", kube_namespace, restart, _content_type=STRATEGIC
        ),
        "delete Pods in an unbound namespace": core.delete_collection_namespaced_pod(
            kube_namespace
        ),
        "read its own Deployment": apps.read_namespaced_deployment(SA, APP_NS),
        "read its own Secret": core.read_namespaced_secret(SA, APP_NS),
        "widen its own RoleBinding": rbac.patch_namespaced_role_binding(
            "alert-remediator-actions",
            TARGET_NS,
            {"metadata": {"labels": {"x": "y"}}},
            _content_type=MERGE,
        ),
        "widen its ClusterRole": rbac.patch_cluster_role(
            "alert-remediator-actions", {"metadata": {"labels": {"x": "y"}}}, _content_type=MERGE
        ),
        "create a Namespace": core.create_namespace(
            k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=f"evil-{uuid.uuid4().hex[:6]}"))
        ),
        "list Nodes": core.list_node(),
        "list Pods in all namespaces": core.list_pod_for_all_namespaces(),
    }
    statuses = {what: await _status(call) for what, call in requests.items()}
    assert statuses == dict.fromkeys(requests, 403)


# Resources the SelfSubjectAccessReview matrix covers: every one the ClusterRole names, plus
# neighbours an over-broad role would leak (subresources, secrets, RBAC, ...).
MATRIX_RESOURCES = (
    ("apps", "deployments"),
    ("apps", "deployments/scale"),
    ("apps", "deployments/status"),
    ("apps", "statefulsets"),
    ("apps", "statefulsets/scale"),
    ("apps", "daemonsets"),
    ("apps", "replicasets"),
    ("apps", "replicasets/scale"),
    ("apps", "controllerrevisions"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("", "pods"),
    ("", "pods/exec"),
    ("", "pods/eviction"),
    ("", "pods/log"),
    ("", "secrets"),
    ("", "configmaps"),
    ("", "serviceaccounts"),
    ("", "serviceaccounts/token"),
    ("", "services"),
    ("", "events"),
    ("batch", "jobs"),
    ("coordination.k8s.io", "leases"),
    ("policy", "poddisruptionbudgets"),
    ("policy", "poddisruptionbudgets/status"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
)
MATRIX_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


async def _allowed(api: Any, namespace: str, group: str, resource: str, verb: str) -> bool:
    res, _, sub = resource.partition("/")
    review = await api.create_self_subject_access_review(
        k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace=namespace or None,
                    group=group,
                    resource=res,
                    subresource=sub or None,
                    verb=verb,
                )
            )
        )
    )
    return bool(review.status.allowed)


async def test_access_matrix_is_exactly_the_documented_verbs(
    remediator: Any, kube_namespace: str
) -> None:
    api = _api(k8s.AuthorizationV1Api, remediator)
    assert {(g, r) for g, r, _ in EXPECTED_PERMISSIONS} <= set(MATRIX_RESOURCES)
    where = {TARGET_NS: True, kube_namespace: False, APP_NS: False, "": False}
    wrong = []
    for namespace, bound in where.items():
        for group, resource in MATRIX_RESOURCES:
            for verb in MATRIX_VERBS:
                want = bound and (group, resource, verb) in EXPECTED_PERMISSIONS
                if await _allowed(api, namespace, group, resource, verb) != want:
                    wrong.append(
                        f"{verb} {group or 'core'}/{resource} in {namespace or '<cluster>'}: "
                        f"{'denied' if want else 'ALLOWED'}"
                    )
    assert wrong == []


async def test_extra_namespace_example_grants_the_new_namespace(
    control_plane: ControlPlane, kubectl: Path, remediator: Any, admin: Any
) -> None:
    name = f"pay-{uuid.uuid4().hex[:6]}"
    await _api(k8s.AppsV1Api, admin).create_namespaced_deployment(
        EXTRA_NS,
        k8s.V1Deployment(
            metadata=k8s.V1ObjectMeta(name=name),
            spec=k8s.V1DeploymentSpec(
                replicas=1,
                selector=k8s.V1LabelSelector(match_labels=_labels(name)),
                template=_template(name),
            ),
        ),
    )
    apps = _api(k8s.AppsV1Api, remediator)
    restart = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "y"}}}}}
    assert await _status(apps.read_namespaced_deployment(name, EXTRA_NS)) == 403
    overlay = render(kubectl, "deploy/examples/extra-namespace")
    run_kubectl(
        kubectl,
        "--kubeconfig",
        str(control_plane.admin_kubeconfig),
        "apply",
        "-f",
        "-",
        stdin=overlay,
    )

    async def granted() -> bool:
        return await _status(apps.read_namespaced_deployment(name, EXTRA_NS)) == 200

    await eventually(granted)
    await apps.patch_namespaced_deployment(
        name, EXTRA_NS, restart, field_manager=FIELD_MANAGER, _content_type=STRATEGIC
    )
    dep = await _api(k8s.AppsV1Api, admin).read_namespaced_deployment(SA, APP_NS)
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
    assert env["REMEDIATOR_NAMESPACE_ALLOW"] == f"{TARGET_NS},{EXTRA_NS}"
    assert await _status(apps.delete_namespaced_deployment(name, EXTRA_NS)) == 403


async def _deployment_with_two_revisions(admin: Any, name: str) -> None:
    apps = _api(k8s.AppsV1Api, admin)
    await apps.create_namespaced_deployment(
        TARGET_NS,
        k8s.V1Deployment(
            metadata=k8s.V1ObjectMeta(name=name),
            spec=k8s.V1DeploymentSpec(
                replicas=1,
                selector=k8s.V1LabelSelector(match_labels=_labels(name)),
                template=_template(name),
            ),
        ),
    )
    await eventually(lambda: owned_replica_sets(admin, TARGET_NS, name))
    await apps.patch_namespaced_deployment(
        name,
        TARGET_NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": IMAGE + "b"}]}}}},
        _content_type=STRATEGIC,
    )

    async def second_revision() -> Any:
        owned = await owned_replica_sets(admin, TARGET_NS, name)
        return owned if len(owned) >= 2 else None

    await eventually(second_revision)


async def test_every_shipped_action_runs_with_the_service_account(
    remediator: Any, admin: Any, targets: dict[str, str]
) -> None:
    """The real action code (not hand-made requests) with the ServiceAccount's token: each
    shipped action succeeds in a bound namespace, server-side dry-run included."""
    from remediations.base import ActionContext, Clients, Outcome
    from remediations.registry import default_registry
    from remediations.targets import Target

    registry = default_registry()
    suffix = uuid.uuid4().hex[:6]
    dep = f"rbac-{suffix}"
    await _deployment_with_two_revisions(admin, dep)
    # A pod its ReplicaSet would replace: a bare pod is refused (nothing would replace it).
    owner = f"rbac-pod-{suffix}"
    await _api(k8s.AppsV1Api, admin).create_namespaced_replica_set(
        TARGET_NS,
        k8s.V1ReplicaSet(
            metadata=k8s.V1ObjectMeta(name=owner),
            spec=k8s.V1ReplicaSetSpec(
                replicas=1,
                selector=k8s.V1LabelSelector(match_labels=_labels(owner)),
                template=_template(owner),
            ),
        ),
    )

    async def pod_of_owner() -> str | None:
        listed = await _api(k8s.CoreV1Api, admin).list_namespaced_pod(
            TARGET_NS, label_selector=f"app={owner}"
        )
        return next((p.metadata.name for p in listed.items), None)

    pod = str(await eventually(pod_of_owner))
    deployment = Target("Deployment", TARGET_NS, dep)
    cases: list[tuple[str, Target, dict[str, Any]]] = [
        ("kubernetes.rollout_restart", deployment, {}),
        (
            "kubernetes.rollout_restart",
            Target("StatefulSet", TARGET_NS, targets["statefulset"]),
            {},
        ),
        ("kubernetes.rollout_restart", Target("DaemonSet", TARGET_NS, targets["daemonset"]), {}),
        ("kubernetes.scale", deployment, {"delta": 1, "max": 3}),
        (
            "kubernetes.set_resources",
            deployment,
            {"container": "app", "memory_limit": {"value": "256Mi"}},
        ),
        (
            "kubernetes.set_env",
            deployment,
            {"container": "app", "name": "DB_POOL_SIZE", "value": "20"},
        ),
        ("kubernetes.rollout_undo", deployment, {}),
        ("kubernetes.delete_pod", Target("Pod", TARGET_NS, pod), {"pod": pod}),
    ]
    # Every Kubernetes action (the others reach no cluster: no RBAC of theirs to test).
    assert {name for name, _, _ in cases} == {
        n for n in registry.names() if n.startswith("kubernetes.")
    }
    clients = Clients({"kubernetes": remediator})
    for dry_run in (True, False):
        for name, target, raw in cases:
            if name == "kubernetes.rollout_undo":
                # The steps before it changed the template; undo binds the revision the
                # controller bumps for that, so it waits until the controller has caught up.
                await wait_for_rollout_settled(admin, TARGET_NS, dep, timeout=60)
            action = registry.get(name)
            params = registry.parse_params(name, raw)
            ctx = ActionContext(run_id=f"rbac-{dry_run}", dry_run=dry_run, clients=clients)
            result = await action.run(ctx, target, params)
            expected = Outcome.DRY_RUN if dry_run else Outcome.OK
            assert result.outcome is expected, (name, target, result)
    # Without a kubelet a deleted pod lingers with a deletionTimestamp, or is gone at once.
    core = _api(k8s.CoreV1Api, admin)
    if await _status(core.read_namespaced_pod(pod, TARGET_NS)) == 200:
        left = await core.read_namespaced_pod(pod, TARGET_NS)
        assert left.metadata.deletion_timestamp is not None


async def test_actions_outside_the_bound_namespaces_are_refused_as_forbidden(
    remediator: Any, admin: Any
) -> None:
    from remediations.base import ActionContext, ActionRefused, Clients
    from remediations.registry import default_registry
    from remediations.targets import Target

    unbound = f"unbound-{uuid.uuid4().hex[:6]}"
    await _api(k8s.CoreV1Api, admin).create_namespace(
        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=unbound))
    )
    registry = default_registry()
    action = registry.get("kubernetes.rollout_restart")
    ctx = ActionContext(run_id="x", dry_run=False, clients=Clients({"kubernetes": remediator}))
    with pytest.raises(ActionRefused, match="forbidden"):
        await action.run(
            ctx,
            Target("Deployment", unbound, "web"),
            registry.parse_params("kubernetes.rollout_restart", {}),
        )
