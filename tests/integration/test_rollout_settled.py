"""The tests' ``wait_for_rollout_settled`` against a real kube-apiserver + controller-manager:
it returns only once the Deployment's revision is the one of its template.

A scale and a template change that one sync of the Deployment controller meets together are a
scaling event (``isScalingEvent`` in kubernetes' ``pkg/controller/deployment``): that sync
scales the ReplicaSets and writes the status, ``observedGeneration`` included, without making
a ReplicaSet for the new template; the next sync makes it, a new revision. The wait used to
return in between, and a ``rollout_undo`` planned then met that revision in its JSON-patch
``test`` ("revision changed"): test_deploy_rbac_actions failed so under load. The state that
sync leaves is written here by hand, the controller held still, so the wait meets it."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from tests.support.kube import ControlPlane
from tests.support.kube_fixtures import (
    MERGE_PATCH,
    REVISION,
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    patch_deployment,
    wait_for_rollout_settled,
)

pytestmark = pytest.mark.kube


async def test_settled_waits_for_the_revision_of_a_template_met_with_a_scale(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    control_plane: ControlPlane,
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    apps = k8s.AppsV1Api(kube_admin)
    template = {"spec": {"containers": [{"name": "app", "image": "img/x:2"}]}}
    with control_plane.controllers_paused():
        changed = await patch_deployment(
            kube_admin,
            ns,
            "web",
            {"spec": {"replicas": 2, "template": template}},
            STRATEGIC_MERGE_PATCH,
        )
        # What the scaling event's sync writes: the generation observed, no new ReplicaSet.
        status = {"status": {"observedGeneration": changed.metadata.generation}}
        options: dict[str, Any] = {"_content_type": MERGE_PATCH}
        await apps.patch_namespaced_deployment_status("web", ns, status, **options)
        # The new template has no ReplicaSet yet: not settled, however long it is waited for.
        with pytest.raises(AssertionError, match="rollout observed"):
            await wait_for_rollout_settled(kube_admin, ns, "web", timeout=2)
    settled = await wait_for_rollout_settled(kube_admin, ns, "web")
    assert settled.metadata.annotations[REVISION] == "2"
    assert settled.spec.template.spec.containers[0].image == "img/x:2"
