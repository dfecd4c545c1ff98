"""A scale restore after a human's ``kubectl rollout undo``, against the real kube-apiserver,
controller-manager and the pinned kubectl.

The Deployment controller copies the Deployment's annotations onto its current ReplicaSet
(``copyDeploymentAnnotationsToReplicaSet``), remediator's among them: the count a scale wrote
(``remediator.io/replicas``) and every step's write record. ``kubectl rollout undo`` gives the
Deployment the target ReplicaSet's annotations (``SetDeploymentAnnotationsTo``), so an older
count and older records come back and the newer ones vanish. A restore must not read that old
count as "what remediator last wrote", nor miss that its own restore already happened.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionContext, ActionRefused, Clients, Outcome
from remediations.kubernetes.scale import REPLICAS_ANNOTATION, Scale
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_fixtures import (
    MakeDeployment,
    release,
    wait_for_revision,
    wait_for_rs_annotations,
)
from tests.support.kubectl import run_kubectl

pytestmark = pytest.mark.kube


def step_ctx(kube: Any, run: str, **recorded: dict[str, Any]) -> ActionContext:
    """Step 0 of run ``run``'s ``run`` phase."""
    return ActionContext(
        run_id=run, dry_run=False, clients=Clients({"kubernetes": kube}), step=0, recorded=recorded
    )


def restore_ctx(scaled: ActionContext, before: int, after: int) -> ActionContext:
    """Step 0 of the same run's ``resolve`` phase, after its scale went ``before`` -> ``after``."""
    own = {Scale.name: {"before": {"replicas": before}, "after": {"replicas": after}}}
    return dataclasses.replace(scaled, phase="resolve", recorded=own)


async def replicas(kube: Any, ns: str) -> int:
    scale = await k8s.AppsV1Api(kube).read_namespaced_deployment_scale("web", ns)
    return int(scale.spec.replicas)


async def stamped(kube: Any, ns: str) -> str | None:
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment("web", ns)
    return (dep.metadata.annotations or {}).get(REPLICAS_ANNOTATION)


async def two_runs_across_a_release(kube: Any, ns: str, make: MakeDeployment) -> ActionContext:
    """web at 2; run A scales it +2 while revision 1 is current (its ReplicaSet gets A's
    count, 4); revision 2 is released; run B scales it +3 (4 -> 7). Returns B's context."""
    await make("web", replicas=2, containers=[k8s.V1Container(name="app", image="img/x:1")])
    target = Target("Deployment", ns, "web")
    a = await Scale().run(step_ctx(kube, str(uuid.uuid4())), target, Scale.Params(delta=2, max=10))
    assert a.after == {"replicas": 4}
    # Revision 1's ReplicaSet carrying run A's count.
    await wait_for_rs_annotations(kube, ns, "web", 1, {REPLICAS_ANNOTATION: "4"})
    await release(kube, ns, "web", 2, "img/x:2")
    b = step_ctx(kube, str(uuid.uuid4()))
    scaled = await Scale().run(b, target, Scale.Params(delta=3, max=10))
    assert scaled.after == {"replicas": 7}
    return b


def kubectl_undo_to_1(kubectl: Path, control_plane: ControlPlane, ns: str) -> None:
    run_kubectl(
        kubectl, "--kubeconfig", str(control_plane.admin_kubeconfig), "-n", ns,
        "rollout", "undo", "deploy/web", "--to-revision=1",
    )  # fmt: skip


async def test_a_stale_count_brought_back_by_kubectl_undo_is_not_restored_to(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    control_plane: ControlPlane,
    kubectl: Path,
) -> None:
    """B scaled 4 -> 7; someone scales it back to 4 by hand, then rolls the image back with
    kubectl. The undo brings back revision 1's count (4, run A's) as "what remediator last
    wrote": the live 4 matched it and B's restore took 3 more off (to 1). The count was
    changed by someone else since B wrote 7: the restore is refused and 4 stays."""
    ns = kube_namespace
    b = await two_runs_across_a_release(kube_admin, ns, make_deployment)
    await k8s.AppsV1Api(kube_admin).patch_namespaced_deployment_scale(
        "web", ns, {"spec": {"replicas": 4}}
    )  # kubectl scale --replicas=4
    kubectl_undo_to_1(kubectl, control_plane, ns)
    await wait_for_revision(kube_admin, ns, "web", 3)
    assert await stamped(kube_admin, ns) == "4"  # run A's count, copied back

    restore, target = restore_ctx(b, 4, 7), Target("Deployment", ns, "web")
    with pytest.raises(ActionRefused, match="no write record of this run's scale"):
        await Scale().run(restore, target, Scale.Params(restore=True, max=10))
    assert await replicas(kube_admin, ns) == 4


async def test_a_restore_whose_record_kubectl_undo_dropped_is_not_made_twice(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    control_plane: ControlPlane,
    kubectl: Path,
) -> None:
    """B's restore took 7 to 4, and the run stopped before recording it. kubectl's undo then
    replaced the annotations with revision 1's: B's records are gone and the count stamped
    is A's 4, equal to the live one. The restore taken up again undid B's +3 a second time
    (to 1); it is refused instead."""
    ns = kube_namespace
    b = await two_runs_across_a_release(kube_admin, ns, make_deployment)
    restore, target = restore_ctx(b, 4, 7), Target("Deployment", ns, "web")
    first = await Scale().run(restore, target, Scale.Params(restore=True, max=10))
    assert (first.outcome, first.after) == (Outcome.OK, {"replicas": 4})
    kubectl_undo_to_1(kubectl, control_plane, ns)
    await wait_for_revision(kube_admin, ns, "web", 3)

    with pytest.raises(ActionRefused, match="no write record of this run's scale"):
        await Scale().run(restore, target, Scale.Params(restore=True, max=10))
    assert await replicas(kube_admin, ns) == 4
