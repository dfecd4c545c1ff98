"""``kubernetes.scale`` against a real kube-apiserver + controller-manager: effects read back."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import ActionRefused, Outcome, ParamsError
from remediations.kubernetes.api import RUN_ID_ANNOTATION
from remediations.kubernetes.scale import Scale
from remediations.registry import default_registry
from tests.support.kube_actions import deployment, make_ctx, read, read_scale
from tests.support.kube_fixtures import MERGE_PATCH, MakeDeployment, patch_deployment

pytestmark = pytest.mark.kube


async def test_scale_modes_clamp_and_restore(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    action, target = Scale(), deployment(ns)
    # Steps 0-3 of one run: a restore needs its run's scale record on the object.
    run = f"run-{uuid.uuid4().hex[:8]}"
    ctx = make_ctx(kube_admin, run_id=run, step=0)

    params = action.Params(replicas=3, max=5)
    change = await action.preview(ctx, target, params)
    result = await action.run(ctx, target, params)
    assert result.outcome is Outcome.OK
    assert result.before == {"replicas": 1} == change.before
    assert result.after == {"replicas": 3} == change.after
    assert await read_scale(kube_admin, ns) == 3

    ctx = make_ctx(kube_admin, run_id=run, step=1)
    result = await action.run(ctx, target, action.Params(delta=-1, min=1, max=5))
    assert (result.before, result.after) == ({"replicas": 3}, {"replicas": 2})
    assert await read_scale(kube_admin, ns) == 2

    ctx = make_ctx(kube_admin, run_id=run, step=2)
    result = await action.run(ctx, target, action.Params(factor=4.0, max=6))  # 8 -> clamped
    assert result.after == {"replicas": 6}
    assert await read_scale(kube_admin, ns) == 6

    ctx = make_ctx(kube_admin, run_id=run, step=3)
    result = await action.run(ctx, target, action.Params(replicas=6, max=6))
    assert result.outcome is Outcome.NOOP

    # The run's own scale step went 1 -> 6; its restore takes those 5 off the live count.
    own = {"kubernetes.scale": {"before": {"replicas": 1}, "after": {"replicas": 6}}}
    restore = make_ctx(kube_admin, run_id=run, recorded=own, step=0, phase="resolve")
    result = await action.run(restore, target, action.Params(restore=True, min=1, max=6))
    assert (result.outcome, result.after) == (Outcome.OK, {"replicas": 1})
    assert await read_scale(kube_admin, ns) == 1
    dep = await read(kube_admin, ns)
    assert "remediator" in {m.manager for m in dep.metadata.managed_fields}
    # The workload is stamped in the same write as the count, with the count written (what a
    # later restore checks the live count against).
    assert dep.metadata.annotations[RUN_ID_ANNOTATION] == restore.run_id
    assert dep.metadata.annotations["remediator.io/action"] == "kubernetes.scale"
    assert dep.metadata.annotations["remediator.io/replicas"] == "1"


async def test_scale_up_never_lowers_a_workload_above_max(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The shipped HighErrorRate rule's step (replicas x 1.5 within [2, 10]) on a Deployment
    someone already runs at 12: it is left at 12, saying why, and the run's restore has
    nothing to undo. Clamping alone scaled it down to 10 in the middle of an error spike."""
    ns = kube_namespace
    await make_deployment("web", replicas=12)
    action, target, ctx = Scale(), deployment(ns), make_ctx(kube_admin)
    result = await action.run(ctx, target, action.Params(factor=1.5, min=2, max=10))
    assert result.outcome is Outcome.NOOP
    assert "has 12 replicas, already at or above max 10: a raise never lowers it" in (
        result.message
    )
    assert await read_scale(kube_admin, ns) == 12
    own = {"kubernetes.scale": {"before": result.before, "after": result.after}}
    restore = make_ctx(kube_admin, recorded=own)
    result = await action.run(restore, target, action.Params(restore=True, min=1, max=10))
    assert (result.outcome, result.message.endswith("nothing to undo")) == (Outcome.NOOP, True)
    assert await read_scale(kube_admin, ns) == 12


async def test_a_lowering_reaches_zero_replicas_only_with_an_explicit_min_0(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """``factor: 0.5`` on 1 replica with the default min 0 scaled the Deployment to 0 (an
    outage). Such a step is refused when the rule is read; ``min: 1`` keeps the pod, saying
    so, and only an explicit ``min: 0`` scales to zero."""
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    registry = default_registry()
    with pytest.raises(ParamsError, match=r"a lowering \(factor 0\.5\) needs min"):
        registry.parse_params(Scale.name, {"factor": 0.5, "max": 5})
    action, target = Scale(), deployment(ns)

    kept = registry.parse_params(Scale.name, {"factor": 0.5, "min": 1, "max": 5})
    result = await action.run(make_ctx(kube_admin), target, kept)
    assert result.outcome is Outcome.NOOP
    assert "has 1 replicas, already at or below min 1: a lowering never raises it" in (
        result.message
    )
    assert await read_scale(kube_admin, ns) == 1

    zero = registry.parse_params(Scale.name, {"factor": 0.5, "min": 0, "max": 5})
    result = await action.run(make_ctx(kube_admin), target, zero)
    assert (result.outcome, result.after) == (Outcome.OK, {"replicas": 0})
    # The Deployment's own spec: the Scale subresource leaves a count of 0 out (omitempty).
    assert (await read(kube_admin, ns)).spec.replicas == 0


async def test_a_restore_never_goes_past_the_count_its_run_started_from(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The run scaled 22 -> 27; its restore step's own max (10) is below both: it undoes the
    +5 (to 22), not "down to max" (to 10, removing 17 pods it never added)."""
    ns = kube_namespace
    await make_deployment("web", replicas=22)
    action, target = Scale(), deployment(ns)
    ctx = make_ctx(kube_admin, step=0)
    scaled = await action.run(ctx, target, action.Params(delta=5, max=30))
    assert scaled.after == {"replicas": 27}
    own = {"kubernetes.scale": {"before": scaled.before, "after": scaled.after}}
    restore = make_ctx(kube_admin, run_id=ctx.run_id, recorded=own, step=0, phase="resolve")
    result = await action.run(restore, target, action.Params(restore=True, max=10))
    assert (result.outcome, result.after) == (Outcome.OK, {"replicas": 22})
    assert result.message.endswith("from 27 to 22 replicas (undoing this run's +5)")
    assert await read_scale(kube_admin, ns) == 22


async def test_a_restore_gives_back_all_its_run_took_whatever_its_own_max(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The run halved 12 -> 6; its restore step's max (10, required of every scale step) is
    below the count the run started from. A restore undoes exactly its run's change (READMEs:
    "takes off the live count exactly what its own run's scale step added (or removed)"): the
    max held it at 10, its message saying the run's -6 was undone, and nothing said that 2
    pods the workload had before the run were still missing."""
    ns = kube_namespace
    await make_deployment("web", replicas=12)
    action, target = Scale(), deployment(ns)
    ctx = make_ctx(kube_admin, step=0)
    halved = await action.run(ctx, target, action.Params(factor=0.5, min=1, max=20))
    assert halved.after == {"replicas": 6}
    own = {"kubernetes.scale": {"before": halved.before, "after": halved.after}}
    restore = make_ctx(kube_admin, run_id=ctx.run_id, recorded=own, step=0, phase="resolve")
    result = await action.run(restore, target, action.Params(restore=True, max=10))
    assert (result.outcome, result.after) == (Outcome.OK, {"replicas": 12}), result.message
    assert result.message.endswith("from 6 to 12 replicas (undoing this run's -6)")
    assert await read_scale(kube_admin, ns) == 12


async def test_a_restore_held_at_its_min_says_so(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """An explicit min stays a floor of a restore (min: 1 keeps a pod), but the step does not
    claim the whole change undone: 2 -> 6, restored with min 3, ends at 3, saying why."""
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    action, target = Scale(), deployment(ns)
    ctx = make_ctx(kube_admin, step=0)
    raised = await action.run(ctx, target, action.Params(delta=4, max=20))
    own = {"kubernetes.scale": {"before": raised.before, "after": raised.after}}
    restore = make_ctx(kube_admin, run_id=ctx.run_id, recorded=own, step=0, phase="resolve")
    result = await action.run(restore, target, action.Params(restore=True, min=3, max=20))
    assert (result.outcome, result.after) == (Outcome.OK, {"replicas": 3})
    assert result.message.endswith(
        "from 6 to 3 replicas (undoing this run's +4 only down to min 3, not to 2)"
    ), result.message
    assert await read_scale(kube_admin, ns) == 3


async def test_scale_resends_over_a_status_only_conflict(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """Something else bumps the resourceVersion but not replicas: the PUT is resent."""
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    plan = await Scale()._checked_plan(
        make_ctx(kube_admin), deployment(ns), Scale.Params(replicas=2, max=3)
    )
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"labels": {"touched": "yes"}}}, MERGE_PATCH
    )
    assert plan.write is not None
    written = await plan.write()
    assert written["spec"]["replicas"] == 2
    assert await read_scale(kube_admin, ns) == 2


async def test_scale_refuses_when_replicas_changed_since_the_plan(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    plan = await Scale()._checked_plan(
        make_ctx(kube_admin), deployment(ns), Scale.Params(delta=1, max=5)
    )
    await patch_deployment(kube_admin, ns, "web", {"spec": {"replicas": 4}}, MERGE_PATCH)
    assert plan.write is not None
    with pytest.raises(ActionRefused, match="changed concurrently from 1 to 4"):
        await plan.write()
    assert await read_scale(kube_admin, ns) == 4


async def test_scale_restore_without_a_change_of_its_run_is_a_noop(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    # No scale step of the run changed the replicas (none, a noop at max, a dry run).
    await make_deployment("web", replicas=2)
    result = await Scale().run(
        make_ctx(kube_admin), deployment(kube_namespace), Scale.Params(restore=True, max=3)
    )
    assert result.outcome is Outcome.NOOP
    assert result.message.endswith("nothing to undo")
    assert await read_scale(kube_admin, kube_namespace) == 2


async def autoscale_web(kube: Any, ns: str) -> None:
    """HorizontalPodAutoscaler ``web-hpa`` (1 to 4 replicas) on Deployment ``web``."""
    await k8s.AutoscalingV2Api(kube).create_namespaced_horizontal_pod_autoscaler(
        ns,
        k8s.V2HorizontalPodAutoscaler(
            metadata=k8s.V1ObjectMeta(name="web-hpa"),
            spec=k8s.V2HorizontalPodAutoscalerSpec(
                scale_target_ref=k8s.V2CrossVersionObjectReference(
                    api_version="apps/v1", kind="Deployment", name="web"
                ),
                min_replicas=1,
                max_replicas=4,
            ),
        ),
    )


async def test_scale_refuses_hpa_managed_target(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    await autoscale_web(kube_admin, ns)
    with pytest.raises(ActionRefused, match=f"HorizontalPodAutoscaler {ns}/web-hpa"):
        await Scale().run(make_ctx(kube_admin), deployment(ns), Scale.Params(replicas=3, max=5))
    assert await read_scale(kube_admin, ns) == 1


async def test_a_restore_with_nothing_to_undo_is_a_noop_under_an_hpa_too(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The run's scale changed nothing (held at its max, a dry run) and an HPA took the
    Deployment on since: the restore has nothing to undo, and says so. It was refused for the
    HPA, which ended the undo there (its later on_resolved steps not run) and announced an
    undo that failed, for a change never made."""
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    await autoscale_web(kube_admin, ns)
    result = await Scale().run(
        make_ctx(kube_admin, step=0, phase="resolve"),
        deployment(ns),
        Scale.Params(restore=True, max=3),
    )
    assert result.outcome is Outcome.NOOP, result.message
    assert result.message.endswith("nothing to undo")
    assert await read_scale(kube_admin, ns) == 2
