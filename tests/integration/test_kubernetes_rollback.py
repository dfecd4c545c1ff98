"""``kubernetes.rollout_undo`` and the release probe against a real kube-apiserver and
controller-manager, compared with the pinned kubectl where kubectl is the reference.

- The Deployment's annotations after an undo are kubectl's (the target ReplicaSet's, so
  ``kubectl rollout history`` names the new revision after what it runs), with remediator's
  own state kept.
- A restart, or remediator's own edit of a container, is not a release: the probe looks past
  it, the default undo goes back past it, and an undo that would only restart is refused.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from pydantic import BaseModel

from remediations.base import Action, ActionContext, ActionRefused, Clients, Outcome
from remediations.kubernetes.api import ACTION_ANNOTATION, RUN_ID_ANNOTATION
from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.objects import RESTARTED_AT, is_remediator_key
from remediations.kubernetes.probe import newest_rollout
from remediations.kubernetes.replay import records_of
from remediations.kubernetes.restart import RolloutRestart
from remediations.kubernetes.rollback import RolloutUndo
from remediations.kubernetes.scale import REPLICAS_ANNOTATION, Scale
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_fixtures import (
    CHANGE_CAUSE,
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    deployment_annotations,
    owned_replica_sets,
    patch_deployment,
    release,
    wait_for_revision,
    wait_for_rs_annotations,
)
from tests.support.kubectl import run_kubectl

pytestmark = pytest.mark.kube


def step_ctx(kube: Any, run_id: str | None = None, step: int = 0) -> ActionContext:
    """The context the pipeline gives step ``step`` of a run's ``run`` phase."""
    return ActionContext(
        run_id=run_id or str(uuid.uuid4()),
        dry_run=False,
        clients=Clients({"kubernetes": kube}),
        step=step,
        phase="run",
    )


def foreign(annotations: dict[str, str]) -> dict[str, str]:
    """The annotations that are not remediator's own."""
    return {k: v for k, v in annotations.items() if not is_remediator_key(k)}


async def three_releases(kube: Any, ns: str, name: str, make_deployment: MakeDeployment) -> None:
    """Revisions 1, 2, 3 of ``name``: images x:1, x:2, x:3 with change-causes v1, v2, v3."""
    await make_deployment(name, containers=[k8s.V1Container(name="app", image="img/x:1")])
    body = {"metadata": {"annotations": {CHANGE_CAUSE: "v1"}}}
    await patch_deployment(kube, ns, name, body, STRATEGIC_MERGE_PATCH)
    await wait_for_rs_annotations(kube, ns, name, 1, {CHANGE_CAUSE: "v1"})
    await release(kube, ns, name, 2, "img/x:2", "v2")
    await release(kube, ns, name, 3, "img/x:3", "v3")


def history(kubectl: Path, kubeconfig: Path, ns: str, name: str) -> list[str]:
    """``kubectl rollout history`` of ``name``, without its first line (the object's name)."""
    out = run_kubectl(
        kubectl, "--kubeconfig", str(kubeconfig), "-n", ns, "rollout", "history", f"deploy/{name}"
    ).stdout
    return [" ".join(line.split()) for line in out.splitlines()[1:] if line.strip()]


async def test_undo_leaves_the_annotations_kubectls_undo_leaves(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    control_plane: ControlPlane,
    kubectl: Path,
) -> None:
    """Two identical histories; kubectl undoes ``a`` to revision 1, remediator undoes ``b``.
    ``kubectl rollout history`` and the annotations (but remediator's own) are the same, and
    remediator's state on ``b`` is its own, not the stale copies on the old ReplicaSet."""
    ns, config = kube_namespace, control_plane.admin_kubeconfig
    await three_releases(kube_admin, ns, "a", make_deployment)
    await make_deployment("b", containers=[k8s.V1Container(name="app", image="img/x:1")])
    # b's remediator state while revision 1 is current: copied onto its ReplicaSet.
    await Scale().run(
        step_ctx(kube_admin), Target("Deployment", ns, "b"), Scale.Params(replicas=2, max=5)
    )
    body = {"metadata": {"annotations": {CHANGE_CAUSE: "v1"}}}
    await patch_deployment(kube_admin, ns, "b", body, STRATEGIC_MERGE_PATCH)
    await wait_for_rs_annotations(
        kube_admin, ns, "b", 1, {CHANGE_CAUSE: "v1", REPLICAS_ANNOTATION: "2"}
    )
    await release(kube_admin, ns, "b", 2, "img/x:2", "v2")
    await release(kube_admin, ns, "b", 3, "img/x:3", "v3")
    scaled = step_ctx(kube_admin)
    await Scale().run(scaled, Target("Deployment", ns, "b"), Scale.Params(replicas=3, max=5))

    run_kubectl(
        kubectl, "--kubeconfig", str(config), "-n", ns, "rollout", "undo", "deploy/a",
        "--to-revision=1",
    )  # fmt: skip
    undo = step_ctx(kube_admin)
    result = await RolloutUndo().run(
        undo, Target("Deployment", ns, "b"), RolloutUndo.Params(to_revision=1)
    )
    assert result.outcome is Outcome.OK, result.message
    await wait_for_revision(kube_admin, ns, "a", 4)
    await wait_for_revision(kube_admin, ns, "b", 4)

    assert history(kubectl, config, ns, "b") == history(kubectl, config, ns, "a")
    assert history(kubectl, config, ns, "b")[-1] == "4 v1"
    a_annotations, b_annotations = (
        await deployment_annotations(kube_admin, ns, "a"),
        await deployment_annotations(kube_admin, ns, "b"),
    )
    assert foreign(b_annotations) == foreign(a_annotations)
    assert b_annotations[CHANGE_CAUSE] == "v1"
    # Remediator's own: the count it last wrote (3, not the ReplicaSet's stale 2), the
    # scale step's write record and this step's, and this step's stamp.
    assert b_annotations[REPLICAS_ANNOTATION] == "3"
    runs = {r.run_id for r in records_of({"metadata": {"annotations": b_annotations}}).values()}
    assert {scaled.run_id, undo.run_id} <= runs
    assert (b_annotations[RUN_ID_ANNOTATION], b_annotations[ACTION_ANNOTATION]) == (
        undo.run_id,
        RolloutUndo.name,
    )


async def restarted_release(kube: Any, ns: str, make_deployment: MakeDeployment) -> None:
    """web: revision 1 (a:1), revision 2 (a:2, a release), revision 3 (a:2 restarted by
    remediator)."""
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    await release(kube, ns, "web", 2, "img/a:2")
    restart = await RolloutRestart().run(
        step_ctx(kube), Target("Deployment", ns, "web"), RolloutRestart.Params()
    )
    assert restart.outcome is Outcome.OK
    await wait_for_revision(kube, ns, "web", 3)


async def image(kube: Any, ns: str) -> str:
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment("web", ns)
    return str(dep.spec.template.spec.containers[0].image)


async def test_the_default_undo_goes_back_past_a_restart_to_the_release_before(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """kubectl's previous revision (2) is the release itself without restartedAt: going
    there would only restart. The revision before the release (1) is what undoes it."""
    ns = kube_namespace
    await restarted_release(kube_admin, ns, make_deployment)
    rs_rev1 = (await owned_replica_sets(kube_admin, ns, "web"))[0]
    target = Target("Deployment", ns, "web")

    result = await RolloutUndo().run(step_ctx(kube_admin), target, RolloutUndo.Params())

    assert result.outcome is Outcome.OK, result.message
    assert result.before == {"revision": 3, "images": {"app": "img/a:2"}}
    assert result.after == {
        "to_revision": 1,
        "replicaset": rs_rev1.metadata.name,
        "images": {"app": "img/a:1"},
    }
    assert await image(kube_admin, ns) == "img/a:1"


async def test_an_undo_that_would_only_restart_is_refused(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await restarted_release(kube_admin, ns, make_deployment)
    target = Target("Deployment", ns, "web")
    before = await deployment_annotations(kube_admin, ns, "web")

    with pytest.raises(ActionRefused, match="differs from the current template only by a restart"):
        await RolloutUndo().run(step_ctx(kube_admin), target, RolloutUndo.Params(to_revision=2))

    assert await deployment_annotations(kube_admin, ns, "web") == before
    assert await image(kube_admin, ns) == "img/a:2"


async def test_a_history_of_restarts_only_has_nothing_to_undo(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    body = {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-01-01T00:00:00Z"}}}}
    }
    await patch_deployment(kube_admin, ns, "web", body, STRATEGIC_MERGE_PATCH)  # kubectl's restart
    await wait_for_revision(kube_admin, ns, "web", 2)
    before = await deployment_annotations(kube_admin, ns, "web")

    with pytest.raises(ActionRefused, match="after revision 1 only restarted its pods"):
        await RolloutUndo().run(
            step_ctx(kube_admin), Target("Deployment", ns, "web"), RolloutUndo.Params()
        )

    assert await deployment_annotations(kube_admin, ns, "web") == before


async def test_restarts_and_remediators_own_edits_are_not_releases(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The probe behind ``rolled_out_within`` looks past remediator's restart, set_env and
    set_resources, and a human's restart, to the release before them; a human's env change
    is a release."""
    ns = kube_namespace
    await make_deployment(
        "web",
        containers=[
            k8s.V1Container(
                name="app",
                image="img/a:1",
                resources=k8s.V1ResourceRequirements(limits={"memory": "1Gi"}),
            )
        ],
    )
    rs_rev1 = (await owned_replica_sets(kube_admin, ns, "web"))[0]
    target, clients = Target("Deployment", ns, "web"), Clients({"kubernetes": kube_admin})
    run = str(uuid.uuid4())
    steps: list[tuple[Action, BaseModel]] = [
        (RolloutRestart(), RolloutRestart.Params()),
        (SetEnv(), SetEnv.Params(container="app", name="DB_POOL_SIZE", value="5")),
        (
            SetResources(),
            SetResources.Params.model_validate(
                {"container": "app", "memory_limit": {"factor": 1.5, "max": "4Gi"}}
            ),
        ),
    ]
    for index, (action, params) in enumerate(steps):
        result = await action.run(step_ctx(kube_admin, run, index), target, params)
        assert result.outcome is Outcome.OK, result.message
        await wait_for_revision(kube_admin, ns, "web", index + 2)
    body = {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-01-01T00:00:00Z"}}}}
    }
    await patch_deployment(kube_admin, ns, "web", body, STRATEGIC_MERGE_PATCH)
    await wait_for_revision(kube_admin, ns, "web", 5)

    state = await newest_rollout(clients, target)
    assert (state.revision, state.replicaset) == (1, rs_rev1.metadata.name)
    assert state.created_at == rs_rev1.metadata.creation_timestamp

    env: dict[str, Any] = {"name": "app", "env": [{"name": "FEATURE", "value": "on"}]}
    human: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [env]}}}}
    await patch_deployment(kube_admin, ns, "web", human, STRATEGIC_MERGE_PATCH)
    await wait_for_revision(kube_admin, ns, "web", 6)
    rs_rev6 = (await owned_replica_sets(kube_admin, ns, "web"))[-1]
    state = await newest_rollout(clients, target)
    assert (state.revision, state.replicaset) == (6, rs_rev6.metadata.name)


async def test_a_humans_rollback_is_never_rolled_back_to_what_it_removed(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    control_plane: ControlPlane,
    kubectl: Path,
) -> None:
    """x:1, x:2, x:3, then ``kubectl rollout undo``: revision 4 is the x:2 ReplicaSet again
    (revision-history "2"). The revision before it, 3, is the x:3 the human removed: the probe
    says there is nothing to roll back to (``can_roll_back`` false), and the default undo
    refuses rather than shipping x:3 again."""
    ns, config = kube_namespace, control_plane.admin_kubeconfig
    await three_releases(kube_admin, ns, "web", make_deployment)
    run_kubectl(kubectl, "--kubeconfig", str(config), "-n", ns, "rollout", "undo", "deploy/web")
    await wait_for_revision(kube_admin, ns, "web", 4)
    assert await image(kube_admin, ns) == "img/x:2"
    target, clients = Target("Deployment", ns, "web"), Clients({"kubernetes": kube_admin})

    state = await newest_rollout(clients, target)

    assert (state.revision, state.returns_to, state.rollback_to) == (4, 2, None)
    assert state.no_rollback.startswith(
        "no previous revision to roll back to that a rollback did not replace: its newest "
        "release, revision 4, is a rollback to the template of revision 2, so going back to "
        "revision 3 would ship again"
    )
    # The ReplicaSet revision 2 was created with: created_at is when x:2 was first shipped.
    rs_x2 = next(
        rs
        for rs in await owned_replica_sets(kube_admin, ns, "web")
        if rs.spec.template.spec.containers[0].image == "img/x:2"
    )
    assert (state.replicaset, state.created_at) == (
        rs_x2.metadata.name,
        rs_x2.metadata.creation_timestamp,
    )
    before = await deployment_annotations(kube_admin, ns, "web")
    with pytest.raises(ActionRefused, match="is a rollback to the template of revision 2"):
        await RolloutUndo().run(step_ctx(kube_admin), target, RolloutUndo.Params())
    assert await deployment_annotations(kube_admin, ns, "web") == before
    assert await image(kube_admin, ns) == "img/x:2"
