"""The newest release when Kubernetes has deleted its ReplicaSet (``revisionHistoryLimit``),
against the real kube-apiserver and Deployment controller.

A Deployment released once (revision 1) and then only restarted, with a history limit of 0 or
1: the ReplicaSet of the release is deleted and only restarts are kept. The probe must not
take the oldest kept restart for the release (it did: the HighErrorRate rule then chose a
rollback that refused, and nothing was scaled). It says the release is not known; the shipped
rule's scale step (``or_release_unknown``) runs, saying why, and the rollback is left out.

The apiserver stamps creationTimestamp itself, so "restarted long ago" is made by the clock
the pipeline is given (two hours ahead), as in test_live_conditions_kube.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from receiver.model import RunOutcome
from tests.integration.test_live_conditions_kube import Clock, labels
from tests.support.kube_fixtures import (
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    owned_replica_sets,
    patch_deployment,
    wait_for_revision,
)
from tests.support.pipeline import MakeHarness
from tests.support.polling import eventually

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]

SHIPPED = Path(__file__).parents[2] / "rules" / "high-error-rate.yaml"

STRICT = """
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_undo
        when: {rolled_out_within: 30m}
        approval: never
      - action: kubernetes.scale
        when: {not_rolled_out_within: 30m}
        params: {factor: 1.5, min: 2, max: 10}
"""

UNDO = """
rules:
  - name: undo
    match: ['alertname="HighErrorRate"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_undo
        approval: never
"""


def shipped_rule() -> str:
    """The shipped HighErrorRate rule, without its announcements (no channel here)."""
    text = SHIPPED.read_text()
    assert "notify: {channel: oncall}" in text
    return text.replace("notify: {channel: oncall}", "")


async def released_then_restarted(
    kube: Any, ns: str, make_deployment: MakeDeployment, *, limit: int, restarts: int
) -> list[Any]:
    """web released once (revision 1, img/a:1, no pods), then restarted ``restarts`` times
    under ``revisionHistoryLimit: limit``; returns the ReplicaSets left once the controller
    has deleted the ones beyond the limit (revision 1's among them)."""
    await make_deployment(
        "web", replicas=0, containers=[k8s.V1Container(name="app", image="img/a:1")]
    )
    limit_body = {"spec": {"revisionHistoryLimit": limit}}
    await patch_deployment(kube, ns, "web", limit_body, STRATEGIC_MERGE_PATCH)
    for n in range(restarts):
        at = (datetime.now(UTC) + timedelta(seconds=n)).isoformat()
        body = {
            "spec": {
                "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}
            }
        }
        await patch_deployment(kube, ns, "web", body, STRATEGIC_MERGE_PATCH)
        await wait_for_revision(kube, ns, "web", 2 + n)

    async def kept() -> list[Any]:
        return await owned_replica_sets(kube, ns, "web")

    return await eventually(kept, lambda rss: len(rss) == limit + 1, what="old ReplicaSets deleted")


def revisions(kept: list[Any]) -> list[str]:
    return [rs.metadata.annotations["deployment.kubernetes.io/revision"] for rs in kept]


@pytest.mark.parametrize(("limit", "restarts"), [(0, 1), (1, 2)])
async def test_a_pruned_release_is_not_known_and_the_shipped_rule_scales_out(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    limit: int,
    restarts: int,
) -> None:
    ns = kube_namespace
    kept = await released_then_restarted(
        kube_admin, ns, make_deployment, limit=limit, restarts=restarts
    )
    assert revisions(kept)[0] == "2"  # revision 1, the release, is gone; 2 is a restart
    harness = await make_harness(shipped_rule(), kube=kube_admin, dry_run=False, clock=Clock())
    await harness.deliver(labels(ns))
    run = await harness.only_run()

    # The scale-out happened (0 replicas raised to the rule's min of 2), not a rollback that
    # refuses for want of a previous revision.
    assert [(s.action, s.outcome) for s in run.steps] == [("kubernetes.scale", "ok")]
    assert run.outcome in (RunOutcome.VERIFYING, RunOutcome.SUCCEEDED)
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert dep.spec.replicas == 2

    # The decision says what was known: not which revision is the release.
    assert run.decision is not None
    (fact,) = run.decision["facts"]
    assert (fact["revision"], fact["known"], fact["bounded"]) == (2, False, True)
    assert fact["replicaset"] == kept[0].metadata.name
    decided = {s["action"]: (s["included"], s["why"][0]) for s in run.decision["steps"]}
    included, why = decided["kubernetes.rollout_undo"]
    assert not included
    assert why.startswith("rolled_out_within 30m: cannot tell (newest release not known: ")
    assert why.endswith("step left out")
    included, why = decided["kubernetes.scale"]
    assert included
    assert why.startswith(
        "not_rolled_out_within 30m or release unknown or nothing to roll back: holds, the "
        "release's age cannot be told (newest release not known: revision 2 (ReplicaSet "
        f"{kept[0].metadata.name}, created "
    )
    assert "revisionHistoryLimit" in why


async def test_restarts_older_than_the_window_still_decide_without_or_release_unknown(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """Two hours after the only kept revision was created, the release (it or an earlier
    one) is at least two hours old: not rolled out within 30 minutes, whichever it was."""
    ns = kube_namespace
    await released_then_restarted(kube_admin, ns, make_deployment, limit=0, restarts=1)
    harness = await make_harness(
        STRICT, kube=kube_admin, dry_run=False, clock=Clock(timedelta(hours=2))
    )
    await harness.deliver(labels(ns))
    run = await harness.only_run()
    assert run.decision is not None
    decided = {s["action"]: (s["included"], s["why"][0]) for s in run.decision["steps"]}
    assert decided["kubernetes.rollout_undo"][0] is False
    assert decided["kubernetes.scale"][0] is True
    assert "so the release is at least 2h" in decided["kubernetes.scale"][1]
    assert [(s.action, s.outcome) for s in run.steps] == [("kubernetes.scale", "ok")]


async def test_rollout_undo_says_the_history_cannot_tell(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    ns = kube_namespace
    await released_then_restarted(kube_admin, ns, make_deployment, limit=1, restarts=2)
    harness = await make_harness(UNDO, kube=kube_admin, dry_run=False)
    await harness.deliver(labels(ns))
    run = await harness.only_run()
    ((action, outcome, message),) = [(s.action, s.outcome, s.message) for s in run.steps]
    assert (action, outcome) == ("kubernetes.rollout_undo", "refused")
    assert "revisions 3 after it only restarted its pods" in (message or "")
    assert "the ReplicaSet of revision 1 is gone (spec.revisionHistoryLimit)" in (message or "")
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", ns)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
