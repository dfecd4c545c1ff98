"""deploy/'s RBAC on a real kube-apiserver: everything beyond the verbs the shipped actions
need is 403.

deploy/ is applied by a real kubectl (tests/support/deploy_rbac.py); the ServiceAccount's token
is minted with the TokenRequest API, and every request below is made with it: requests out of
scope are forbidden, and a SelfSubjectAccessReview matrix allows exactly the documented verbs
in the bound namespace and nothing elsewhere."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from tests.support.deploy_manifests import EXPECTED_PERMISSIONS
from tests.support.deploy_rbac import (
    APP_NS,
    IMAGE,
    MERGE,
    RESTARTED_AT,
    SA,
    STRATEGIC,
    TARGET_NS,
    _api,
    _labels,
    _status,
    _template,
    admin,
    installed,
    remediator,
    targets,
)
from tests.support.kube_fixtures import MakeDeployment

__all__ = ["admin", "installed", "remediator", "targets"]  # the fixtures, used here by name

pytestmark = pytest.mark.kube


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
