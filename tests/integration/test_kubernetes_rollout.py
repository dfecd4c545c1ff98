"""``kubernetes.rollout_restart`` and ``kubernetes.rollout_undo`` against a real
kube-apiserver + controller-manager: effects read back."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionRefused, Outcome
from remediations.kubernetes.api import RUN_ID_ANNOTATION
from remediations.kubernetes.restart import RESTARTED_AT, RolloutRestart
from remediations.kubernetes.rollback import RolloutUndo
from remediations.targets import Target
from tests.support.kube_actions import (
    container,
    deployment,
    make_ctx,
    make_revision_2,
    read,
    set_image,
    snapshot,
)
from tests.support.kube_fixtures import (
    MERGE_PATCH,
    REVISION,
    MakeDeployment,
    make_db_stateful_set,
    owned_replica_sets,
    patch_deployment,
    wait_for_revision,
)

pytestmark = pytest.mark.kube


# --------------------------------------------------------------------------------------------
# rollout_restart


async def test_restart_stamps_template_and_controller_rolls_a_new_revision(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    action, target, params = RolloutRestart(), deployment(ns), RolloutRestart.Params()
    ctx = make_ctx(kube_admin, step=0)

    change = await action.preview(ctx, target, params)
    result = await action.run(ctx, target, params)

    assert result.outcome is Outcome.OK
    assert result.before == {"restartedAt": None}
    assert set(change.after) == set(result.after) == {"restartedAt"}
    restarted = datetime.datetime.fromisoformat(str(result.after["restartedAt"]))
    assert abs((datetime.datetime.now(datetime.UTC) - restarted).total_seconds()) < 60
    dep = await read(kube_admin, ns)
    assert dep.spec.template.metadata.annotations[RESTARTED_AT] == result.after["restartedAt"]
    assert dep.metadata.annotations[RUN_ID_ANNOTATION] == ctx.run_id
    assert "remediator" in {m.manager for m in dep.metadata.managed_fields}
    await wait_for_revision(kube_admin, ns, "web", 2)

    # The same step retried (a take-up after a crash) does not restart a second time; another
    # restart step does (tests/integration/test_kubernetes_steps.py).
    again = await action.run(ctx, target, params)
    assert again.outcome is Outcome.OK
    assert "already applied by this run before a restart" in again.message
    assert (await read(kube_admin, ns)).metadata.annotations[REVISION] == "2"


@pytest.mark.parametrize(
    ("strategy", "said"),
    [
        (None, ""),
        # The controller replaces no pod by itself: the record says so, where it said the
        # restart was done as for any other (kubectl writes the same and says "restarted").
        (
            "OnDelete",
            "; its updateStrategy is OnDelete, so no pod is replaced until it is deleted "
            "(a kubernetes.delete_pod step on the same target does that)",
        ),
    ],
)
async def test_restart_statefulset(
    kube_admin: Any, kube_namespace: str, strategy: str | None, said: str
) -> None:
    ns = kube_namespace
    update = k8s.V1StatefulSetUpdateStrategy(type=strategy) if strategy else None
    await make_db_stateful_set(kube_admin, ns, replicas=1, strategy=update)
    result = await RolloutRestart().run(
        make_ctx(kube_admin), Target("StatefulSet", ns, "db"), RolloutRestart.Params()
    )
    assert result.outcome is Outcome.OK
    assert result.message == (
        f"restart StatefulSet {ns}/db: set pod template annotation {RESTARTED_AT} to the time "
        f"of the restart{said}"
    )
    sts = await k8s.AppsV1Api(kube_admin).read_namespaced_stateful_set("db", ns)
    assert sts.spec.template.metadata.annotations[RESTARTED_AT] == result.after["restartedAt"]


async def test_restart_refuses_paused_deployment(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    await make_deployment("web", paused=True)
    before = await snapshot(kube_admin, kube_namespace)
    with pytest.raises(ActionRefused, match="can't restart paused deployment"):
        await RolloutRestart().run(
            make_ctx(kube_admin), deployment(kube_namespace), RolloutRestart.Params()
        )
    assert await snapshot(kube_admin, kube_namespace) == before


# --------------------------------------------------------------------------------------------
# rollout_undo


async def test_undo_lands_on_the_bound_revision(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    action, target = RolloutUndo(), deployment(ns)
    ctx = make_ctx(kube_admin)
    rs_rev1 = (await owned_replica_sets(kube_admin, ns, "web"))[0]

    change = await action.preview(ctx, target, RolloutUndo.Params())
    assert change.preconditions == {
        "current_revision": "2",
        "to_revision": "1",
        "replicaset": rs_rev1.metadata.name,
    }
    # How an approval is to bind the previewed revisions into the params (nothing in the
    # service does it yet: the pipeline calls run() with the rule's params).
    bound = RolloutUndo.Params(expected_revision=2, to_revision=1)
    result = await action.run(ctx, target, bound)

    assert result.outcome is Outcome.OK
    assert result.after == change.after
    assert result.after["images"] == {"app": "img/a:1"}
    assert result.before == {"revision": 2, "images": {"app": "img/a:2"}}
    dep = await read(kube_admin, ns)
    assert container(dep, "app").image == "img/a:1"
    assert "pod-template-hash" not in dep.spec.template.metadata.labels
    assert dep.metadata.annotations[RUN_ID_ANNOTATION] == ctx.run_id
    await wait_for_revision(kube_admin, ns, "web", 3)

    # Running the same bound step again must not flip back to a:2.
    with pytest.raises(ActionRefused, match="revision changed"):
        await action.run(ctx, target, bound)
    assert container(await read(kube_admin, ns), "app").image == "img/a:1"


async def test_undo_refuses_when_revision_moved_after_approval(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    change = await RolloutUndo().preview(make_ctx(kube_admin), deployment(ns), RolloutUndo.Params())
    bound = RolloutUndo.Params(
        expected_revision=int(change.preconditions["current_revision"]),
        to_revision=int(change.preconditions["to_revision"]),
    )
    await set_image(kube_admin, ns, "img/a:3")
    await wait_for_revision(kube_admin, ns, "web", 3)

    with pytest.raises(ActionRefused, match="revision changed"):
        await RolloutUndo().run(make_ctx(kube_admin), deployment(ns), bound)
    assert container(await read(kube_admin, ns), "app").image == "img/a:3"


async def test_undo_json_patch_test_op_catches_a_race(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The change lands between the plan's read and the write: the API's `test` op refuses."""
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    action = RolloutUndo()
    plan = await action._checked_plan(make_ctx(kube_admin), deployment(ns), RolloutUndo.Params())
    await set_image(kube_admin, ns, "img/a:3")
    await wait_for_revision(kube_admin, ns, "web", 3)
    assert plan.write is not None

    with pytest.raises(ActionRefused, match="revision changed"):
        await plan.write()
    assert container(await read(kube_admin, ns), "app").image == "img/a:3"


async def test_undo_refusals(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    ctx = make_ctx(kube_admin)
    with pytest.raises(ActionRefused, match="no previous revision"):
        await RolloutUndo().run(ctx, deployment(ns), RolloutUndo.Params())
    with pytest.raises(ActionRefused, match="no rollout history found for revision 7"):
        await RolloutUndo().run(ctx, deployment(ns), RolloutUndo.Params(to_revision=7))
    await patch_deployment(kube_admin, ns, "web", {"spec": {"paused": True}}, MERGE_PATCH)
    with pytest.raises(ActionRefused, match="can't roll back paused deployment"):
        await RolloutUndo().run(ctx, deployment(ns), RolloutUndo.Params())
    with pytest.raises(ActionRefused, match="acts on Deployment, not StatefulSet"):
        await RolloutUndo().run(ctx, Target("StatefulSet", ns, "web"), RolloutUndo.Params())
