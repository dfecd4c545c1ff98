"""Kubernetes fixtures: one real control plane per session, a fresh namespace per test.

``control_plane`` (session) starts etcd + kube-apiserver + kube-controller-manager from
``hack/controlplane`` (see tests/support/kube.py). ``kube_admin`` is an admin ApiClient,
``kube_namespace`` a namespace deleted after the test, and ``make_deployment`` a factory that
creates a Deployment and waits until the controller has given it a revisioned ReplicaSet.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Protocol

import pytest
import pytest_asyncio
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from remediations.base import ActionContext, Clients
from remediations.kubernetes.release import without_hash
from tests.support.kube import ControlPlane, ControlPlaneError
from tests.support.polling import eventually
from tests.support.servers import server_missing

REVISION = "deployment.kubernetes.io/revision"
DEFAULT_IMAGE = "registry.invalid/app:1"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
CHANGE_CAUSE = "kubernetes.io/change-cause"


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    cp = ControlPlane()
    try:
        cp.start()
    except (ControlPlaneError, OSError) as exc:
        print(f"control plane unavailable: {exc}")  # the reason, in the captured output
        server_missing("kube-apiserver")
    try:
        yield cp
    finally:
        cp.stop()


@pytest_asyncio.fixture
async def kube_admin(control_plane: ControlPlane) -> AsyncIterator[Any]:
    api_client = await control_plane.admin_api_client()
    try:
        yield api_client
    finally:
        await api_client.close()


@pytest_asyncio.fixture
async def kube_namespace(kube_admin: Any) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:12]}"
    core = k8s.CoreV1Api(kube_admin)
    await core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            await core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


async def owned_replica_sets(api_client: Any, namespace: str, name: str) -> list[Any]:
    """ReplicaSets controlled by Deployment ``namespace/name``, by ascending revision."""
    apps = k8s.AppsV1Api(api_client)
    dep = await apps.read_namespaced_deployment(name, namespace)
    items = (await apps.list_namespaced_replica_set(namespace)).items
    owned = [
        rs
        for rs in items
        if any(
            ref.controller and ref.uid == dep.metadata.uid
            for ref in rs.metadata.owner_references or []
        )
    ]
    return sorted(owned, key=lambda rs: int((rs.metadata.annotations or {}).get(REVISION, 0)))


async def wait_for_revision(
    api_client: Any, namespace: str, name: str, revision: int, *, timeout: float = 30.0
) -> Any:
    """Wait until Deployment ``name`` is at ``revision`` with a ReplicaSet of that revision."""
    apps = k8s.AppsV1Api(api_client)

    async def check() -> Any:
        dep = await apps.read_namespaced_deployment(name, namespace)
        if (dep.metadata.annotations or {}).get(REVISION) != str(revision):
            return None
        revisions = [
            (rs.metadata.annotations or {}).get(REVISION)
            for rs in await owned_replica_sets(api_client, namespace, name)
        ]
        return dep if str(revision) in revisions else None

    return await eventually(check, timeout_s=timeout, what=f"{name} at revision {revision}")


async def wait_for_rollout_settled(
    api_client: Any, namespace: str, name: str, *, timeout: float = 30.0
) -> Any:
    """Wait until the Deployment controller has caught up with Deployment ``name``: it has
    observed the latest generation, the revision annotation names the newest ReplicaSet it
    owns, and that ReplicaSet runs the Deployment's template. A change to the template bumps
    the revision only then, so whatever reads the revision next (rollout_undo, its JSON-patch
    ``test``) must wait for this, not race it. The template matters too: a scale and a
    template change that one sync of the controller meets together are a scaling event
    (``isScalingEvent``), which syncs the status, observedGeneration included, before any
    ReplicaSet for the new template exists; a later sync makes it, a new revision."""
    apps = k8s.AppsV1Api(api_client)

    def template(obj: Any) -> dict[str, Any]:
        return without_hash(api_client.sanitize_for_serialization(obj.spec.template))

    async def check() -> Any:
        dep = await apps.read_namespaced_deployment(name, namespace)
        if (dep.status.observed_generation or 0) < dep.metadata.generation:
            return None
        owned = await owned_replica_sets(api_client, namespace, name)
        newest = (owned[-1].metadata.annotations or {}).get(REVISION) if owned else None
        current = (dep.metadata.annotations or {}).get(REVISION)
        if newest is None or current != newest:
            return None
        return dep if template(owned[-1]) == template(dep) else None

    return await eventually(check, timeout_s=timeout, what=f"{name}'s rollout observed")


async def wait_for_quiet(api_client: Any, namespace: str, name: str) -> Any:
    """``wait_for_rollout_settled``, then until the controller has stopped writing the
    Deployment's status: two reads half a second apart with the same resourceVersion. Until
    then each status write moves it, and a write that carries the one it read (every write with
    a write record) meets a 409 that a test did not plan for."""
    await wait_for_rollout_settled(api_client, namespace, name)
    apps = k8s.AppsV1Api(api_client)
    seen: list[str] = []

    async def unchanged() -> Any:
        dep = await apps.read_namespaced_deployment(name, namespace)
        seen.append(dep.metadata.resource_version)
        return dep if len(seen) > 1 and seen[-1] == seen[-2] else None

    return await eventually(unchanged, interval_s=0.5, what=f"{name}'s status written")


async def patch_deployment(
    api_client: Any, namespace: str, name: str, body: Any, content_type: str
) -> Any:
    """PATCH a Deployment with an explicit Content-Type (the client's stubs omit the option)."""
    options: dict[str, Any] = {"_content_type": content_type}
    return await k8s.AppsV1Api(api_client).patch_namespaced_deployment(
        name, namespace, body, **options
    )


async def release(
    api_client: Any, namespace: str, name: str, revision: int, image: str, cause: str | None = None
) -> None:
    """Ship ``image`` to the ``app`` container of Deployment ``name`` (with ``cause`` as its
    change-cause, as ``kubectl annotate`` or ``--record`` would) and wait for ``revision``."""
    body: dict[str, Any] = {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}
    }
    if cause is not None:
        body["metadata"] = {"annotations": {CHANGE_CAUSE: cause}}
    await patch_deployment(api_client, namespace, name, body, STRATEGIC_MERGE_PATCH)
    await wait_for_revision(api_client, namespace, name, revision)


async def rs_annotations(
    api_client: Any, namespace: str, name: str, revision: int
) -> dict[str, str]:
    """The annotations of the ReplicaSet of ``revision`` of Deployment ``name``; AssertionError
    when it has none of that revision."""
    for rs in await owned_replica_sets(api_client, namespace, name):
        annotations = rs.metadata.annotations or {}
        if annotations.get(REVISION) == str(revision):
            return dict(annotations)
    raise AssertionError(f"{name} has no ReplicaSet of revision {revision}")


async def deployment_annotations(api_client: Any, namespace: str, name: str) -> dict[str, str]:
    """The annotations of Deployment ``name``, as read now."""
    dep = await k8s.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    return dict(dep.metadata.annotations or {})


async def wait_for_rs_annotations(
    api_client: Any, namespace: str, name: str, revision: int, wanted: Mapping[str, str]
) -> dict[str, str]:
    """Wait until the ReplicaSet of ``revision`` of Deployment ``name`` carries every
    annotation of ``wanted`` (the controller copies the Deployment's annotations onto its
    current ReplicaSet, a moment after they were written); returns all its annotations."""
    annotations: dict[str, str] = await eventually(
        lambda: rs_annotations(api_client, namespace, name, revision),
        lambda found: all(found.get(key) == value for key, value in wanted.items()),
        what=f"{name}'s ReplicaSet of revision {revision} carrying {sorted(wanted)}",
    )
    return annotations


async def make_db_stateful_set(
    api_client: Any, namespace: str, *, replicas: int | None = None, strategy: Any = None
) -> Any:
    """Create StatefulSet ``db`` in ``namespace`` (service ``db``, pods labelled ``app: db``,
    one container ``db`` running ``img/db:1``) and return it as created; nothing waits for
    its pods. ``replicas`` None and ``strategy`` (a V1StatefulSetUpdateStrategy) None leave
    the API's defaults (1, RollingUpdate)."""
    labels = {"app": "db"}
    return await k8s.AppsV1Api(api_client).create_namespaced_stateful_set(
        namespace,
        k8s.V1StatefulSet(
            metadata=k8s.V1ObjectMeta(name="db"),
            spec=k8s.V1StatefulSetSpec(
                service_name="db",
                replicas=replicas,
                update_strategy=strategy,
                selector=k8s.V1LabelSelector(match_labels=labels),
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels=labels),
                    spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="db", image="img/db:1")]),
                ),
            ),
        ),
    )


class MakeDeployment(Protocol):
    async def __call__(
        self,
        name: str,
        *,
        replicas: int = ...,
        containers: Sequence[Any] | None = ...,
        paused: bool = ...,
        labels: Mapping[str, str] | None = ...,
    ) -> Any: ...


@pytest_asyncio.fixture
async def make_deployment(kube_admin: Any, kube_namespace: str) -> MakeDeployment:
    """Create a Deployment in ``kube_namespace``; returns it once revision 1 exists.

    ``containers`` are V1Container objects (default: one ``app`` container). ``paused`` pauses
    it after the first ReplicaSet exists (a Deployment created paused never gets one).
    ``labels`` are its selector and pod labels (default ``{"app": name}``). The namespace's
    deletion removes everything created here.
    """
    apps = k8s.AppsV1Api(kube_admin)

    async def create(
        name: str,
        *,
        replicas: int = 1,
        containers: Sequence[Any] | None = None,
        paused: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> Any:
        labels = dict(labels) if labels is not None else {"app": name}
        body = k8s.V1Deployment(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels),
            spec=k8s.V1DeploymentSpec(
                replicas=replicas,
                selector=k8s.V1LabelSelector(match_labels=labels),
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels=labels),
                    spec=k8s.V1PodSpec(
                        containers=list(containers)
                        if containers is not None
                        else [k8s.V1Container(name="app", image=DEFAULT_IMAGE)]
                    ),
                ),
            ),
        )
        await apps.create_namespaced_deployment(kube_namespace, body)
        dep = await wait_for_revision(kube_admin, kube_namespace, name, 1)
        if paused:
            dep = await patch_deployment(
                kube_admin, kube_namespace, name, {"spec": {"paused": True}}, MERGE_PATCH
            )
        return dep

    return create


def first_step_ctx(kube: Any) -> ActionContext:
    """The context the pipeline gives step 0 of a new run's ``run`` phase, with ``kube`` (an
    ApiClient) as its Kubernetes client."""
    return ActionContext(
        run_id=str(uuid.uuid4()),
        dry_run=False,
        clients=Clients({"kubernetes": kube}),
        step=0,
        phase="run",
    )
