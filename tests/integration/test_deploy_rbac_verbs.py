"""deploy/'s RBAC on a real kube-apiserver: the verbs each shipped action needs work in the
bound namespace.

deploy/ is applied by a real kubectl (tests/support/deploy_rbac.py); the ServiceAccount's token
is minted with the TokenRequest API, and every request below is made with it, by hand, as
each action makes it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from tests.support.deploy_rbac import (
    FIELD_MANAGER,
    IMAGE,
    JSON_PATCH,
    MERGE,
    RESTARTED_AT,
    REVISION,
    STRATEGIC,
    TARGET_NS,
    _api,
    _status,
    admin,
    installed,
    remediator,
    targets,
)
from tests.support.kube_fixtures import wait_for_rollout_settled

__all__ = ["admin", "installed", "remediator", "targets"]  # the fixtures, used here by name

pytestmark = pytest.mark.kube


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
