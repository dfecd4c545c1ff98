"""deploy/ applied by a real kubectl to a real kube-apiserver, and clients to exercise its RBAC.

kubectl comes from tests/support/kubectl.py, the API server from hack/controlplane
(tests/support/kube.py). The fixtures are module-scoped, as the tests of
tests/integration/test_deploy_rbac*.py share one installation per module: ``installed``
applies deploy/ with ``kubectl apply -k``, ``admin`` is an admin ApiClient, ``remediator``
one authenticated as the shipped ServiceAccount (its token minted with the TokenRequest API),
and ``targets`` the workloads, HPA, Secret and ConfigMap created as admin in the bound
namespace. A test module imports the fixtures it uses, with the ones they use
(``installed``, ``admin``), and names them in its ``__all__``."""

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

from tests.support.kube import ControlPlane
from tests.support.kube_clients import api_client_from_kubeconfig
from tests.support.kube_fixtures import owned_replica_sets
from tests.support.kubectl import run_kubectl
from tests.support.polling import eventually

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
