"""HighErrorRate end to end (rules/high-error-rate.yaml, docs/playbooks/HighErrorRate.md), both
branches of the runbook in one test.

`api` was just released (revision 2): its 5xx ratio goes to a third of its requests; Prometheus
fires the shipped alert (rates over the real counters), Alertmanager routes it, and the run
decides on the live rollout age that this is a recent release: rolling back waits for an
engineer, is approved through the API, and `api` is back on revision 1's template (revision 3).
Its errors stop: the run is verified.

`legacy` has run the same revision for longer than the (re-timed) window: the same alert scales
it out by half instead, nothing to approve. Its errors stop: verified. On-call heard about both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import CURRENT_ALERTMANAGER, Stack
from tests.support.kube_fixtures import (
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    owned_replica_sets,
    patch_deployment,
    wait_for_revision,
)
from tests.support.peers import MetricsEndpoint
from tests.support.remediator import RULE_TIMES
from tests.support.runbooks import approve, deployment, own_pods, run_of, run_steps, until

pytestmark = [pytest.mark.e2e, pytest.mark.kube, pytest.mark.timeout(120), CURRENT_ALERTMANAGER]

RULE = "rollback-or-scale-on-high-error-rate"
WINDOW_S = float(RULE_TIMES["when.rolled_out_within"].removesuffix("s"))


class Traffic:
    """``http_requests_total`` of one Deployment's pods, as growing counters."""

    def __init__(self, metrics: MetricsEndpoint, namespace: str, deployment: str) -> None:
        self.metrics = metrics
        self.pods = own_pods(metrics, namespace, deployment, 2)
        self.namespace = namespace

    def serve(self, ok: float, errors: float) -> None:
        """Per pod and second: ``ok`` 200s and ``errors`` 500s from now on."""
        for pod in self.pods:
            for code, rate in (("200", ok), ("500", errors)):
                labels = {"namespace": self.namespace, "pod": pod, "code": code}
                self.metrics.set_rate("http_requests_total", labels, rate)


def _image(dep: Any) -> str:
    (app,) = dep.spec.template.spec.containers
    return str(app.image)


async def test_high_error_rate_rolls_back_a_recent_release_and_scales_out_an_old_one(
    stack: Stack, kube_admin: Any, bound_namespace: str, make_deployment: MakeDeployment
) -> None:
    namespace = bound_namespace
    await make_deployment("legacy", replicas=2)  # ages while the first half runs
    await make_deployment("api", replicas=2)
    await patch_deployment(
        kube_admin,
        namespace,
        "api",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "api:2"}]}}}},
        STRATEGIC_MERGE_PATCH,
    )
    await wait_for_revision(kube_admin, namespace, "api", 2)
    api, legacy = (
        Traffic(stack.metrics, namespace, "api"),
        Traffic(stack.metrics, namespace, "legacy"),
    )
    api.serve(ok=10, errors=5)
    legacy.serve(ok=10, errors=0)
    try:
        # A recent release: roll back, once approved.
        target = f"Deployment/{namespace}/api"
        waiting = await run_of(
            stack.api,
            RULE,
            target,
            "awaiting_approval",
            what="the rollback to wait for an approval",
        )
        assert run_steps(waiting) == [("kubernetes.rollout_undo", "awaiting_approval")]
        (fact,) = waiting["decision"]["facts"]
        assert fact["revision"] == 2
        assert [s["included"] for s in waiting["decision"]["steps"]] == [True, False]
        await approve(stack.api, stack.sink, waiting["id"], "kubernetes.rollout_undo")
        rolled = await run_of(stack.api, RULE, target, "verifying", what="the rollback")
        assert run_steps(rolled) == [("kubernetes.rollout_undo", "ok")]
        back = await wait_for_revision(kube_admin, namespace, "api", 3)
        assert _image(back) == "registry.invalid/app:1"

        api.serve(ok=50_000, errors=0)  # the rollback worked: the ratio falls under 5 %
        await run_of(stack.api, RULE, target, "verified", what="it verified")
        await stack.sink.wait_for(
            "announcing the rollback",
            lambda b: b.get("run_id") == waiting["id"] and b.get("event") == "run_finished",
        )

        # A Deployment not released within the window: scale out instead.
        async def old_enough() -> bool:
            (newest, *_) = reversed(await owned_replica_sets(kube_admin, namespace, "legacy"))
            age = datetime.now(UTC) - newest.metadata.creation_timestamp
            return bool(age.total_seconds() > WINDOW_S + 1)

        await until("legacy's revision to age past the window", old_enough, WINDOW_S + 30)
        legacy.serve(ok=10, errors=5)
        target = f"Deployment/{namespace}/legacy"
        scaled = await run_of(stack.api, RULE, target, "verifying", what="the scale-out")
        assert run_steps(scaled) == [("kubernetes.scale", "ok")]
        assert [s["included"] for s in scaled["decision"]["steps"]] == [False, True]
        assert (await deployment(kube_admin, namespace, "legacy")).spec.replicas == 3
        legacy.serve(ok=50_000, errors=0)
        await run_of(stack.api, RULE, target, "verified", what="it verified")
        await stack.sink.wait_for(
            "announcing the scale-out",
            lambda b: b.get("run_id") == scaled["id"] and b.get("event") == "run_finished",
        )
        # The extra replicas stay: the runbook does not scale back after errors.
        assert (await deployment(kube_admin, namespace, "legacy")).spec.replicas == 3
    finally:
        stack.metrics.remove("http_requests_total")
