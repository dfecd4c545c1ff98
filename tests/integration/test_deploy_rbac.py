"""deploy/ applied by a real kubectl to a real kube-apiserver: the install and its
extra-namespace example.

kubectl comes from tests/support/kubectl.py (the rendering alone is tested in
tests/unit/test_deploy_render.py), the API server from hack/controlplane
(tests/support/kube.py); the fixtures from tests/support/deploy_rbac.py. The apply succeeds
and its pods pass Pod Security "restricted"; the extra-namespace overlay grants the
ServiceAccount the new namespace. What the ServiceAccount may do: test_deploy_rbac_verbs.py,
test_deploy_rbac_scope.py, test_deploy_rbac_actions.py."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from tests.support.deploy_rbac import (
    APP_NS,
    EXTRA_NS,
    FIELD_MANAGER,
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
)
from tests.support.kube import ControlPlane
from tests.support.kubectl import render, run_kubectl
from tests.support.polling import eventually

__all__ = ["admin", "installed", "remediator"]  # the fixtures, used here by name

pytestmark = pytest.mark.kube


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
