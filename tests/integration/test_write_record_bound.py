"""Write records stay bounded where the Deployment controller copies them, against the real
kube-apiserver and controller-manager.

The controller copies a Deployment's annotations onto its current ReplicaSet and never removes
one there (``copyDeploymentAnnotationsToReplicaSet`` in kubernetes'
``pkg/controller/deployment/util/deployment_util.go``). Scale writes make no new ReplicaSet, so
whatever record keys the writes ever put on the Deployment pile up on the current ReplicaSet;
past 256 KiB of annotations the controller can no longer update it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from pydantic import BaseModel

from remediations.base import ActionContext, Clients, Outcome
from remediations.kubernetes.api import KubeAction, KubeApi, WriteConflict
from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.replay import MAX_RECORDS, WRITE_PREFIX, WriteRecord, records_of
from remediations.kubernetes.restart import RolloutRestart
from remediations.kubernetes.rollback import RolloutUndo
from remediations.kubernetes.scale import Scale
from remediations.targets import Target
from tests.support.kube_actions import make_revision_2
from tests.support.kube_fixtures import (
    MakeDeployment,
    deployment_annotations,
    patch_deployment,
    rs_annotations,
    wait_for_revision,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.kube

MERGE_PATCH = "application/merge-patch+json"


def step_ctx(kube: Any, run: str, step: int = 0) -> ActionContext:
    """Step ``step`` of run ``run``'s ``run`` phase."""
    return ActionContext(
        run_id=run, dry_run=False, clients=Clients({"kubernetes": kube}), step=step
    )


def record_keys(annotations: dict[str, str]) -> set[str]:
    return {k for k in annotations if k.startswith(WRITE_PREFIX)}


def runs_of(annotations: dict[str, str]) -> set[str]:
    return {r.run_id for r in records_of({"metadata": {"annotations": annotations}}).values()}


async def test_scale_writes_leave_a_bounded_number_of_record_keys_on_the_replica_set(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """20 scale writes by 20 runs, each copied onto revision 1's ReplicaSet by the controller
    before the next: the ReplicaSet kept all 20 record keys (one per step, never removed
    there) while the Deployment kept 8. Only ``MAX_RECORDS`` keys may ever reach it."""
    ns, writes = kube_namespace, 20
    await make_deployment("web", replicas=1)
    target = Target("Deployment", ns, "web")
    for i in range(writes):
        run = str(uuid.uuid4())
        result = await Scale().run(
            step_ctx(kube_admin, run), target, Scale.Params(replicas=1 + (i + 1) % 2, max=10)
        )
        assert result.outcome is Outcome.OK, result.message
        await eventually(
            lambda: rs_annotations(kube_admin, ns, "web", 1),
            lambda annotations, run=run: run in runs_of(annotations),  # type: ignore[misc]
            what=f"revision 1's ReplicaSet carrying write {i}'s record",
        )
    on_rs = await rs_annotations(kube_admin, ns, "web", 1)
    on_deployment = await deployment_annotations(kube_admin, ns, "web")
    assert len(record_keys(on_deployment)) == MAX_RECORDS
    assert len(record_keys(on_rs)) <= MAX_RECORDS, sorted(record_keys(on_rs))
    # What the ReplicaSet holds is what the Deployment holds: the newest records.
    assert runs_of(on_rs) == runs_of(on_deployment)


async def test_records_of_the_previous_key_form_are_found_and_moved_into_slots(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """A Deployment written by the previous version carries per-step keys. A step taken up
    again still finds its own record there (and does not scale twice); the next write moves
    the records it keeps into the slot keys and removes the per-step keys, so the
    Deployment's keys, and what the controller copies, stay bounded."""
    ns = kube_namespace
    await make_deployment("web", replicas=4)
    target = Target("Deployment", ns, "web")
    crashed, other = str(uuid.uuid4()), str(uuid.uuid4())
    legacy = {
        f"{WRITE_PREFIX}{crashed}.run.0": WriteRecord(
            Scale.name,
            {"summary": "scale from 2 to 4", "before": {"replicas": 2}, "after": {"replicas": 4}},
            {"replicas": 4},
            crashed,
            "run",
            0,
            {},
            "2026-01-01T00:00:00.000000Z",
        ).to_json()
    }
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"annotations": legacy}}, MERGE_PATCH
    )

    again = await Scale().run(step_ctx(kube_admin, crashed), target, Scale.Params(delta=2, max=10))
    assert "already applied by this run before a restart" in again.message
    assert (again.before, again.after) == ({"replicas": 2}, {"replicas": 4})

    scaled = await Scale().run(step_ctx(kube_admin, other), target, Scale.Params(delta=1, max=10))
    assert scaled.after == {"replicas": 5}
    annotations = await deployment_annotations(kube_admin, ns, "web")
    assert record_keys(annotations) <= {f"{WRITE_PREFIX}slot-{i}" for i in range(MAX_RECORDS)}
    assert runs_of(annotations) == {crashed, other}


async def test_overlapping_runs_filling_the_slots_do_not_erase_each_others_records(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """With every slot taken, two runs write the Deployment at once (a scale and a restart):
    both read the same oldest slot as the one to reuse. Each write is conditioned on the
    resourceVersion it read, so the one that lands second is re-planned from the object as the
    first left it: both records stay, and the keys stay the slot keys."""
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    target = Target("Deployment", ns, "web")
    for i in range(MAX_RECORDS):
        await Scale().run(
            step_ctx(kube_admin, str(uuid.uuid4())), target, Scale.Params(replicas=2 + i, max=20)
        )
    scaler, restarter = str(uuid.uuid4()), str(uuid.uuid4())
    scaled, restarted = await asyncio.gather(
        Scale().run(step_ctx(kube_admin, scaler), target, Scale.Params(delta=1, max=20)),
        RolloutRestart().run(step_ctx(kube_admin, restarter), target, RolloutRestart.Params()),
    )
    assert (scaled.outcome, restarted.outcome) == (Outcome.OK, Outcome.OK)
    await wait_for_revision(kube_admin, ns, "web", 2)
    annotations = await deployment_annotations(kube_admin, ns, "web")
    assert {scaler, restarter} <= runs_of(annotations)
    assert record_keys(annotations) == {f"{WRITE_PREFIX}slot-{i}" for i in range(MAX_RECORDS)}
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert dep.spec.replicas == MAX_RECORDS + 2


def template_steps() -> list[tuple[KubeAction[Any], BaseModel]]:
    """Every action whose write adds a record to a Deployment without scale's own re-read."""
    return [
        (RolloutRestart(), RolloutRestart.Params()),
        (SetEnv(), SetEnv.Params(container="app", name="MODE", value="safe")),
        (
            SetResources(),
            SetResources.Params.model_validate({"container": "app", "cpu_limit": {"value": "2"}}),
        ),
        (RolloutUndo(), RolloutUndo.Params()),
    ]


@pytest.mark.parametrize(
    ("action", "params"), template_steps(), ids=["restart", "set_env", "set_resources", "undo"]
)
async def test_a_write_planned_before_another_runs_record_does_not_overwrite_it(
    action: KubeAction[Any],
    params: BaseModel,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """A step plans its write (choosing the free slot-0 for its record); another run's scale
    lands first and its record takes slot-0. The planned write, conditioned on the
    resourceVersion it read, is refused by the API server (WriteConflict) instead of
    overwriting that record; run() plans again and both records stay."""
    ns = kube_namespace
    await make_revision_2(kube_admin, ns, make_deployment)
    target = Target("Deployment", ns, "web")
    mine, other = step_ctx(kube_admin, str(uuid.uuid4())), str(uuid.uuid4())
    plan = await action.plan(KubeApi(mine, action.retry, action.name), target, params)
    assert plan.write is not None
    await Scale().run(step_ctx(kube_admin, other), target, Scale.Params(delta=1, max=10))

    with pytest.raises(WriteConflict):
        await plan.write()
    assert other in runs_of(await deployment_annotations(kube_admin, ns, "web"))
    result = await action.run(mine, target, params)
    assert result.outcome is Outcome.OK, result.message
    assert {mine.run_id, other} <= runs_of(await deployment_annotations(kube_admin, ns, "web"))


def phase_ctx(kube: Any, run: str, phase: str, step: int, scaled: Any = None) -> ActionContext:
    """Step ``step`` of run ``run``'s ``phase``; ``scaled``: the Result of the run's scale step,
    as the pipeline gives it to a restore."""
    recorded = {Scale.name: {"before": scaled.before, "after": scaled.after}} if scaled else {}
    return ActionContext(
        run_id=run,
        dry_run=False,
        clients=Clients({"kubernetes": kube}),
        step=step,
        phase=phase,
        recorded=recorded,
    )


async def test_an_open_runs_scale_record_outlasts_eight_writes_of_runs_that_restored(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """Run A scales workers 4 -> 6; four later runs (other queues' backlogs on the same
    consumers) each scale +1 and restore: eight writes. A's restore, which needs A's scale
    record, still finds it (the closed runs' records went first) and takes workers back to 4."""
    ns = kube_namespace
    await make_deployment("workers", replicas=4)
    target = Target("Deployment", ns, "workers")
    a = str(uuid.uuid4())
    scaled = await Scale().run(
        phase_ctx(kube_admin, a, "run", 0), target, Scale.Params(delta=2, max=20)
    )
    assert scaled.after == {"replicas": 6}
    for _ in range(4):
        b = str(uuid.uuid4())
        out = await Scale().run(
            phase_ctx(kube_admin, b, "run", 0), target, Scale.Params(delta=1, max=20)
        )
        back = await Scale().run(
            phase_ctx(kube_admin, b, "resolve", 0, out), target, Scale.Params(restore=True, max=20)
        )
        assert (out.after, back.after) == ({"replicas": 7}, {"replicas": 6}), back.message

    restored = await Scale().run(
        phase_ctx(kube_admin, a, "resolve", 0, scaled), target, Scale.Params(restore=True, max=20)
    )

    assert restored.outcome is Outcome.OK, restored.message
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("workers", ns)
    assert dep.spec.replicas == 4
