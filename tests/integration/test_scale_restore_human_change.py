"""A restore never takes a human's replica count away, also when another run scaled over it;
a human's scale between a scale's read and its write is kept (real control plane)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionRefused, Outcome
from remediations.kubernetes.kubeapi import KubeApi
from remediations.kubernetes.scale import REPLICAS_ANNOTATION, Scale
from remediations.targets import Target
from tests.integration.test_scale_kubectl_undo import replicas, restore_ctx, step_ctx
from tests.support.kube_fixtures import MakeDeployment

pytestmark = pytest.mark.kube


async def kubectl_scale(kube: Any, ns: str, count: int) -> None:
    """What ``kubectl scale --replicas`` sends: a patch of the scale subresource."""
    # The stubs omit _content_type, hence a typed dict of options (as test_write_record_size).
    options: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
    await k8s.AppsV1Api(kube).patch_namespaced_deployment_scale(
        "web", ns, {"spec": {"replicas": count}}, **options
    )


async def test_a_restore_refuses_when_a_later_run_scaled_over_a_human_change(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    target = Target("Deployment", ns, "web")
    a = step_ctx(kube_admin, str(uuid.uuid4()))
    assert (await Scale().run(a, target, Scale.Params(delta=2, max=20))).after == {"replicas": 4}
    await kubectl_scale(kube_admin, ns, 10)  # a human: "we need 10 for the sale"
    b = step_ctx(kube_admin, str(uuid.uuid4()))
    assert (await Scale().run(b, target, Scale.Params(delta=2, max=20))).after == {"replicas": 12}
    rb = await Scale().run(restore_ctx(b, 10, 12), target, Scale.Params(restore=True, max=20))
    assert rb.outcome is Outcome.OK
    assert await replicas(kube_admin, ns) == 10
    with pytest.raises(ActionRefused, match="changed by someone else after this run's scale"):
        await Scale().run(restore_ctx(a, 2, 4), target, Scale.Params(restore=True, max=20))
    assert await replicas(kube_admin, ns) == 10


async def test_a_human_scale_between_read_and_write_is_kept(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    target = Target("Deployment", ns, "web")
    original = KubeApi.patch_workload
    done: list[int] = []

    async def racing(self: KubeApi, *args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(1)
            await kubectl_scale(kube_admin, ns, 7)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(KubeApi, "patch_workload", racing)
    with pytest.raises(ActionRefused) as info:
        await Scale().run(step_ctx(kube_admin, "r"), target, Scale.Params(delta=2, max=20))
    assert "changed concurrently from 2 to 7" in str(info.value)
    assert not info.value.may_have_acted
    assert await replicas(kube_admin, ns) == 7
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert REPLICAS_ANNOTATION not in (dep.metadata.annotations or {})
