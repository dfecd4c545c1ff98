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


def recreating(
    monkeypatch: pytest.MonkeyPatch, kube: Any, ns: str, make: MakeDeployment, count: int
) -> list[str]:
    """Before the first write of Deployment ``web``, delete it and create it again with
    ``count`` replicas (a new uid); the list gets the new uid."""
    original = KubeApi.patch_workload
    uids: list[str] = []

    async def racing(self: KubeApi, *args: Any, **kwargs: Any) -> Any:
        if not uids:
            await k8s.AppsV1Api(kube).delete_namespaced_deployment("web", ns)
            uids.append((await make("web", replicas=count)).metadata.uid)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(KubeApi, "patch_workload", racing)
    return uids


async def test_a_scale_that_meets_a_recreated_workload_is_restored_from_it(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Deleted and created again between the scale's read and its write, with the count the
    # plan read: the scale is planned again from the new Deployment and scales it (kubectl
    # scale re-reads on the conflict too), so its record names that one: the run's restore
    # took it for one recreated since and left the +2 in place.
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    target = Target("Deployment", ns, "web")
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))
    uids = recreating(monkeypatch, kube_admin, ns, make_deployment, 2)
    scaled = await Scale().run(ctx, target, Scale.Params(delta=2, max=10))
    assert scaled.after == {"replicas": 4}
    assert await replicas(kube_admin, ns) == 4
    restored = await Scale().run(restore_ctx(ctx, 2, 4), target, Scale.Params(restore=True, max=10))
    assert restored.outcome is Outcome.OK, restored.message
    assert await replicas(kube_admin, ns) == 2
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert [dep.metadata.uid] == uids


async def test_a_restore_never_writes_a_workload_recreated_since_its_plan(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The restore's plan found this run's record on the Deployment it scaled; before its write
    # the Deployment is deleted and created again, with the count the restore read. The new
    # one is not the run's to undo: the restore wrote 2 into it, its count compared alone.
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    target = Target("Deployment", ns, "web")
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))
    assert (await Scale().run(ctx, target, Scale.Params(delta=2, max=10))).after == {"replicas": 4}
    uids = recreating(monkeypatch, kube_admin, ns, make_deployment, 4)
    with pytest.raises(ActionRefused, match="nor this run's write record") as refused:
        await Scale().run(restore_ctx(ctx, 2, 4), target, Scale.Params(restore=True, max=10))
    assert not refused.value.may_have_acted
    assert uids
    assert await replicas(kube_admin, ns) == 4
