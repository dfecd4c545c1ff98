"""Smoke test: the real control plane from hack/controlplane runs Deployments and enforces RBAC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from tests.support.kube import ControlPlane
from tests.support.kube_clients import api_client_from_kubeconfig
from tests.support.polling import eventually

pytestmark = pytest.mark.kube

REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as cp:
        yield cp


def _deployment(name: str) -> k8s.V1Deployment:
    labels = {"app": name}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=2,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(
                    containers=[k8s.V1Container(name="app", image="registry.invalid/app:1")]
                ),
            ),
        ),
    )


async def test_deployment_controller_creates_revisioned_replicaset(
    control_plane: ControlPlane,
) -> None:
    api_client = await control_plane.admin_api_client()
    try:
        core = k8s.CoreV1Api(api_client)
        apps = k8s.AppsV1Api(api_client)
        ns = "smoke-deploy"
        await core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        dep = await apps.create_namespaced_deployment(ns, _deployment("web"))
        dep_uid = dep.metadata.uid
        assert dep_uid

        async def owned() -> list[k8s.V1ReplicaSet]:
            rs_list = await apps.list_namespaced_replica_set(ns)
            return [
                rs
                for rs in rs_list.items
                if any(ref.uid == dep_uid for ref in rs.metadata.owner_references or [])
            ]

        replica_sets = await eventually(
            owned,
            lambda rs: bool(rs) and (rs[0].metadata.annotations or {}).get(REVISION) == "1",
            what="a revisioned ReplicaSet owned by the Deployment",
        )
        assert len(replica_sets) == 1, replica_sets
        rs = replica_sets[0]
        assert (rs.metadata.annotations or {}).get(REVISION) == "1"
        assert rs.spec.replicas == 2
        assert rs.spec.template.spec.containers[0].image == "registry.invalid/app:1"

        # The ReplicaSet controller creates the Pods (nothing runs them: there is no kubelet).
        async def pods_of_web() -> list[k8s.V1Pod]:
            return list((await core.list_namespaced_pod(ns, label_selector="app=web")).items)

        pods = await eventually(pods_of_web, lambda pods: len(pods) == 2)
        assert all(p.metadata.owner_references[0].uid == rs.metadata.uid for p in pods)
    finally:
        await api_client.close()


async def test_service_account_without_rbac_is_forbidden(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    ns = "smoke-rbac"
    token = await control_plane.service_account_token(ns, "nobody")
    assert token.count(".") == 2  # a JWT

    kubeconfig = control_plane.write_kubeconfig_for_token(token, tmp_path / "kubeconfig")
    api_client = await api_client_from_kubeconfig(kubeconfig)
    try:
        apps = k8s.AppsV1Api(api_client)
        with pytest.raises(ApiException) as excinfo:
            await apps.list_namespaced_deployment(ns)
        assert excinfo.value.status == 403
        body = excinfo.value.body
        status = json.loads(body.decode() if isinstance(body, bytes) else str(body))
        assert status["reason"] == "Forbidden"
        assert f'"system:serviceaccount:{ns}:nobody" cannot list resource' in status["message"]

        # The token is genuine: TokenReview (as admin) authenticates it as that ServiceAccount.
        admin = await control_plane.admin_api_client()
        try:
            review = await k8s.AuthenticationV1Api(admin).create_token_review(
                k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token))
            )
        finally:
            await admin.close()
        assert review.status.authenticated is True
        assert review.status.user.username == f"system:serviceaccount:{ns}:nobody"
    finally:
        await api_client.close()


async def test_garbage_collector_deletes_owned_replicasets(control_plane: ControlPlane) -> None:
    api_client = await control_plane.admin_api_client()
    try:
        apps = k8s.AppsV1Api(api_client)
        ns = "smoke-gc"
        await k8s.CoreV1Api(api_client).create_namespace(
            k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns))
        )
        await apps.create_namespaced_deployment(ns, _deployment("gc"))

        async def replica_sets() -> list[k8s.V1ReplicaSet]:
            return list((await apps.list_namespaced_replica_set(ns)).items)

        await eventually(replica_sets, what="a ReplicaSet")
        await apps.delete_namespaced_deployment(
            "gc", ns, body=k8s.V1DeleteOptions(propagation_policy="Background")
        )
        await eventually(
            replica_sets,
            lambda left: not left,
            what="the garbage collector deleting the ReplicaSet",
        )
    finally:
        await api_client.close()
