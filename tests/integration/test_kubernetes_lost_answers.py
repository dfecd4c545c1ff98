"""Writes whose answer was lost, against the real API server behind a fault-injecting
reverse proxy: reported done when a re-read shows them landed, and "may have acted" when the
re-read cannot tell.

The action's ApiClient talks plain HTTP to a proxy on 127.0.0.1 with the bearer token of a
ServiceAccount bound to cluster-admin; the proxy (tests/support/fault_proxy.py) forwards over
TLS to the real kube-apiserver, except for the first requests of a chosen method and path,
which it answers with a fault (or forwards and then drops the answer)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import Outcome, TransientActionError
from remediations.kubernetes.container import SetEnv
from remediations.kubernetes.rollback import RolloutUndo
from remediations.kubernetes.scale import Scale
from remediations.targets import Target
from tests.support.fault_proxy import LOST, FaultProxy, deployment_path, proxied_client, proxy
from tests.support.kube_actions import FAST, make_revision_2
from tests.support.kube_fixtures import (
    MakeDeployment,
    first_step_ctx,
    owned_replica_sets,
    wait_for_quiet,
    wait_for_revision,
)

__all__ = ["proxied_client", "proxy"]  # the fixtures, used here by name

pytestmark = pytest.mark.kube


async def test_an_undo_whose_answer_was_lost_is_reported_done(
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """The rollback PATCH lands, its answer is lost, and the controller makes the rollback
    revision 3 before the retry: the retried JSON Patch's `test` of revision 2 fails with 422.
    The step's own write record on the Deployment says the rollback was done: ok, not
    "revision changed ... not rolling back"."""
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    # As below: the rollback carries the resourceVersion it read.
    await wait_for_quiet(kube_admin, ns, "web")
    rs_rev1 = (await owned_replica_sets(kube_admin, ns, "web"))[0]
    path = deployment_path(ns)

    async def rolled_back() -> None:
        await wait_for_revision(kube_admin, ns, "web", 3)

    proxy.on_lost = rolled_back
    proxy.inject("PATCH", path, LOST)
    ctx = first_step_ctx(proxied_client)

    result = await RolloutUndo(retry=FAST).run(
        ctx, Target("Deployment", ns, "web"), RolloutUndo.Params()
    )

    assert result.outcome is Outcome.OK, result.message
    assert result.before == {"revision": 2, "images": {"app": "img/a:2"}}
    assert result.after == {
        "to_revision": 1,
        "replicaset": rs_rev1.metadata.name,
        "images": {"app": "img/a:1"},
    }
    assert proxy.answered[("PATCH", path)] == [200, 422]  # applied, then the retry's `test`
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert dep.spec.template.spec.containers[0].image == "img/a:1"
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"


async def test_a_landed_write_stays_may_have_acted_when_its_replan_cannot_read(
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """The set_env PATCH lands and its answer is lost; the retry meets 409 (its own write moved
    the resourceVersion), and the re-plan's read then fails (an overloaded API server). The
    step must fail as "may have acted", or its run counts as having changed nothing and its
    on_resolved steps are never planned."""
    ns = kube_namespace
    await make_deployment("web")
    # The write carries the resourceVersion it read: wait until the controller has stopped
    # writing the new Deployment's status, or the first PATCH meets its 409 instead of landing.
    await wait_for_quiet(kube_admin, ns, "web")
    path = deployment_path(ns)

    async def overloaded() -> None:
        proxy.inject("GET", path, *([503] * 6))

    proxy.on_lost = overloaded
    proxy.inject("PATCH", path, LOST)
    ctx = first_step_ctx(proxied_client)

    with pytest.raises(TransientActionError) as caught:
        await SetEnv(retry=FAST).run(
            ctx,
            Target("Deployment", ns, "web"),
            SetEnv.Params(container="app", name="DB_POOL_SIZE", value="5"),
        )

    assert proxy.answered[("PATCH", path)] == [200, 409]  # applied, then the retry's conflict
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env or []}
    assert env.get("DB_POOL_SIZE") == "5"
    assert caught.value.may_have_acted is True


async def test_a_scale_whose_patch_landed_stays_may_have_acted_when_its_reread_is_throttled(
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """The scale PATCH lands and its answer is lost; the retry meets 409 (its own write moved
    the resourceVersion), and the re-read that would find the step's record is throttled on
    every try (429: that read did not act). The step must still fail as "may have acted": a
    429 says nothing of the PATCH before it, and such a step would otherwise wait and scale
    again from the count it set."""
    ns = kube_namespace
    await make_deployment("web")
    await wait_for_quiet(kube_admin, ns, "web")
    path = deployment_path(ns)

    async def throttled() -> None:
        proxy.inject("GET", path, *([429] * 6))

    proxy.on_lost = throttled
    proxy.inject("PATCH", path, LOST)
    ctx = first_step_ctx(proxied_client)

    with pytest.raises(TransientActionError) as caught:
        await Scale(retry=FAST).run(
            ctx, Target("Deployment", ns, "web"), Scale.Params(replicas=2, max=3)
        )

    assert proxy.answered[("PATCH", path)] == [200, 409]  # applied, then the retry's conflict
    assert "HTTP 429" in caught.value.message
    scale = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 2
    assert caught.value.may_have_acted is True


async def test_an_undo_whose_answer_was_lost_and_whose_reread_is_throttled_may_have_acted(
    proxied_client: Any,
    proxy: FaultProxy,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """As above, the rollback lands, its answer lost, and its retry's `test` fails with 422;
    then the read that would find the step's record is throttled on every try (429). The
    429s did not act, the PATCH before them did: the step fails as "may have acted"."""
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    await wait_for_quiet(kube_admin, ns, "web")
    path = deployment_path(ns)

    async def rolled_back_then_throttled() -> None:
        await wait_for_revision(kube_admin, ns, "web", 3)
        proxy.inject("GET", path, *([429] * 6))

    proxy.on_lost = rolled_back_then_throttled
    proxy.inject("PATCH", path, LOST)
    ctx = first_step_ctx(proxied_client)

    with pytest.raises(TransientActionError) as caught:
        await RolloutUndo(retry=FAST).run(
            ctx, Target("Deployment", ns, "web"), RolloutUndo.Params()
        )

    assert proxy.answered[("PATCH", path)] == [200, 422]
    assert "HTTP 429" in caught.value.message
    assert caught.value.may_have_acted is True
