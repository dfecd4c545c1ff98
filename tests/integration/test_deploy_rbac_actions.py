"""The shipped Kubernetes actions' own code run with deploy/'s ServiceAccount on a real
kube-apiserver: each succeeds in a bound namespace, and is refused as forbidden outside.

deploy/ is applied by a real kubectl (tests/support/deploy_rbac.py); the ServiceAccount's token
is minted with the TokenRequest API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from tests.support.deploy_rbac import (
    IMAGE,
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
from tests.support.kube_fixtures import owned_replica_sets, wait_for_rollout_settled
from tests.support.polling import eventually

__all__ = ["admin", "installed", "remediator", "targets"]  # the fixtures, used here by name

pytestmark = pytest.mark.kube


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
