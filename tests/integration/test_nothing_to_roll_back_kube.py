"""The shipped HighErrorRate rule on a Deployment with nothing to roll back to, against the real
kube-apiserver and Deployment controller.

A Deployment created a moment ago has one revision: its creation is its newest release, younger
than 30 minutes. The rule planned the rollback, which refused (no earlier revision), and the
scale-out never happened. Now the rollout fact says there is nothing to roll back to (what
``rollout_undo`` itself decides), the rollback is left out and the Deployment is scaled out,
the decision saying why. A Deployment with a real earlier release still gets the rollback.

The shipped rule is used as shipped, but for its announcements (no channel here) and its
approval (``never``: the rollback runs, so the test sees it land on the revision it was
planned for).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from receiver.store import RunRecord
from tests.integration.test_live_conditions_kube import Clock, labels, released_twice, state
from tests.integration.test_release_history_kube import shipped_rule
from tests.support.kube_fixtures import (
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    patch_deployment,
    wait_for_revision,
)
from tests.support.pipeline import MakeHarness

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]

UNDO, SCALE = "kubernetes.rollout_undo", "kubernetes.scale"


def rule_without_approval() -> str:
    text = shipped_rule()
    assert text.count("approval: required") == 1
    return text.replace("approval: required", "approval: never")


def decided(run: RunRecord) -> dict[str, tuple[bool, list[str]]]:
    assert run.decision is not None
    return {s["action"]: (s["included"], s["why"]) for s in run.decision["steps"]}


async def revision(kube: Any, ns: str) -> str:
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment("web", ns)
    value: str = dep.metadata.annotations["deployment.kubernetes.io/revision"]
    return value


async def test_a_new_deployment_is_scaled_out_not_rolled_back(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    ns = kube_namespace
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    harness = await make_harness(
        rule_without_approval(), kube=kube_admin, dry_run=False, clock=Clock()
    )
    await harness.deliver(labels(ns))
    run = await harness.only_run()

    # The scale step was taken (1 replica, times 1.5, at least 2), and no rollback was planned.
    assert [(s.action, s.outcome) for s in run.steps] == [(SCALE, "ok")]
    assert await state(kube_admin, ns) == ("img/a:1", 2)
    assert await revision(kube_admin, ns) == "1"

    # The decision says why: the release is recent, but there is nothing to roll back to.
    steps = decided(run)
    included, why = steps[UNDO]
    assert not included
    assert why[0].startswith(
        "rolled_out_within 30m: holds (newest release: revision 1 (the Deployment's creation)"
    )
    assert why[1] == (
        "can_roll_back true: does not hold (no previous revision to roll back to: revision 1 "
        "is its creation, its first release)"
    )
    included, why = steps[SCALE]
    assert included
    assert why[0].startswith(
        "not_rolled_out_within 30m or release unknown or nothing to roll back: holds, there is "
        "nothing to roll back to (no previous revision to roll back to: revision 1 is its "
        "creation, its first release); by the release's age alone it does not hold"
    )
    assert run.decision is not None
    (fact,) = run.decision["facts"]
    assert (fact["revision"], fact["nothing_to_roll_back"]) == (
        1,
        "no previous revision to roll back to: revision 1 is its creation, its first release",
    )
    assert "known" not in fact  # the release is known: it is the creation


async def test_a_new_deployment_restarted_since_is_scaled_out_naming_the_restart(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """kubectl's previous revision would be revision 1, the same template as the restart on
    top: nothing to roll back to either, and the probe names the restart."""
    ns = kube_namespace
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    at = datetime.now(UTC).isoformat()
    body = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}
        }
    }
    await patch_deployment(kube_admin, ns, "web", body, STRATEGIC_MERGE_PATCH)
    await wait_for_revision(kube_admin, ns, "web", 2)
    harness = await make_harness(
        rule_without_approval(), kube=kube_admin, dry_run=False, clock=Clock()
    )
    await harness.deliver(labels(ns))
    run = await harness.only_run()

    assert [(s.action, s.outcome) for s in run.steps] == [(SCALE, "ok")]
    assert await state(kube_admin, ns) == ("img/a:1", 2)
    assert not decided(run)[UNDO][0]
    assert run.decision is not None
    (fact,) = run.decision["facts"]
    assert fact["nothing_to_roll_back"] == (
        "no previous revision to roll back to: revisions 2 after revision 1 only restarted "
        "its pods or are remediator's own changes, not releases, and revision 1 is its creation"
    )


async def test_a_deployment_with_an_earlier_release_is_still_rolled_back(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    ns = kube_namespace
    await released_twice(kube_admin, ns, make_deployment)
    harness = await make_harness(
        rule_without_approval(), kube=kube_admin, dry_run=False, clock=Clock()
    )
    await harness.deliver(labels(ns))
    run = await harness.only_run()

    # The rollback was planned, to the revision the fact named, and it landed there.
    assert [(s.action, s.outcome) for s in run.steps] == [(UNDO, "ok")]
    assert await state(kube_admin, ns) == ("img/a:1", 1)  # rolled back, not scaled
    steps = decided(run)
    assert steps[UNDO] == (
        True,
        [
            steps[UNDO][1][0],
            "can_roll_back true: holds (revision 1 before the newest release (revision 2) to "
            "roll back to)",
        ],
    )
    assert steps[UNDO][1][0].startswith("rolled_out_within 30m: holds (newest release: revision 2")
    assert not steps[SCALE][0]
    assert run.decision is not None
    (fact,) = run.decision["facts"]
    assert (fact["revision"], fact["rollback_to"]) == (2, 1)
    assert "nothing_to_roll_back" not in fact


async def test_a_paused_deployment_with_a_recent_release_is_scaled_out_not_rolled_back(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """``rollout_undo`` refuses a paused Deployment, as kubectl does ("you cannot rollback a
    paused deployment; resume it first"): the fact says there is nothing to roll back to, so
    the rollback (with the shipped approval, asked for and then refused) is left out, and the
    scale-out, which a paused Deployment takes, is made."""
    ns = kube_namespace
    await released_twice(kube_admin, ns, make_deployment)
    await patch_deployment(kube_admin, ns, "web", {"spec": {"paused": True}}, STRATEGIC_MERGE_PATCH)
    harness = await make_harness(
        rule_without_approval(), kube=kube_admin, dry_run=False, clock=Clock()
    )
    await harness.deliver(labels(ns))
    run = await harness.only_run()

    assert [(s.action, s.outcome) for s in run.steps] == [(SCALE, "ok")]
    assert await state(kube_admin, ns) == ("img/a:2", 2)
    included, why = decided(run)[UNDO]
    assert not included
    assert why[1].startswith("can_roll_back true: does not hold (paused (spec.paused)")
    assert run.decision is not None
    (fact,) = run.decision["facts"]
    assert fact["revision"] == 2
    assert fact["nothing_to_roll_back"].startswith("paused (spec.paused): a paused Deployment")


async def test_an_old_new_deployment_is_scaled_out_on_its_age(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """Two hours after its creation the age alone decides, as before: the decision says so
    first (not_rolled_out_within holds), and the rollback is not planned."""
    ns = kube_namespace
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    harness = await make_harness(
        rule_without_approval(),
        kube=kube_admin,
        dry_run=False,
        clock=Clock(timedelta(hours=2)),
    )
    await harness.deliver(labels(ns))
    run = await harness.only_run()
    assert [(s.action, s.outcome) for s in run.steps] == [(SCALE, "ok")]
    why = decided(run)[SCALE][1][0]
    assert why.startswith(
        "not_rolled_out_within 30m or release unknown or nothing to roll back: holds (newest "
        "release: revision 1 (the Deployment's creation)"
    )
