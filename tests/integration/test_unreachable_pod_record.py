"""What ``kubernetes.delete_pod``'s write record says when the step ends part way
(remediations/kubernetes/pod_holder.py ``correct_stopped``, ``correct_unplanned``).

The record goes on the Deployment before the evictions and says every chosen pod was
deleted; a step that ends otherwise makes it say the truth. Before, two endings left it
claiming every pod deleted: a step whose first eviction went through and whose second could
not (a failure that may have acted, so the step ends at once), and a step whose last try,
its wait for the server over, failed in its plan (a read throttled) after an earlier try had
written the record and waited, its evictions never sent. The kube-apiserver is reached
through the proxy of test_unreachable_write.py, which throttles what each test says (429,
as API priority and fairness answers).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from receiver.model import RunOutcome
from tests.integration.test_unreachable_system import fire
from tests.integration.test_unreachable_system import web as web_alert
from tests.integration.test_unreachable_write import (
    DELETE_POD,
    CuttingProxy,
    failed_corrected,
    proxied_kube,
    proxy,
    waiting_delete,
)
from tests.support.kube_budgets import pods_of, step_record
from tests.support.kube_fixtures import MakeDeployment
from tests.support.pipeline import MakeHarness
from tests.support.polling import eventually

__all__ = ["proxied_kube", "proxy"]  # the fixtures, used here by name

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]

DELETE_TWO = DELETE_POD + "        params: {max_pods: 2}\n"


async def test_a_step_stopped_after_one_of_two_evictions_records_which_went(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    proxy: CuttingProxy,
    proxied_kube: Any,
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    await eventually(
        lambda: pods_of(kube_admin, ns, "web"), lambda found: len(found) == 2, timeout_s=30
    )
    h = await make_harness(DELETE_TWO, kube=proxied_kube, dry_run=False, guards_down_retry_s=0)
    proxy.throttle_evictions = True
    proxy.let_evictions = 1
    await fire(h, web_alert(ns))
    run = await h.only_run()
    assert run.outcome is RunOutcome.FAILED, run.error
    (step,) = run.steps
    assert step.outcome == "failed", step.message
    assert step.may_have_acted  # one pod went: it does not wait for the server
    record = await step_record(kube_admin, ns, "web", run.id)
    first, second = record.change["before"]["pods"]
    # Before: {"deleted": [first, second]}, though the second's eviction never got through.
    assert record.after == {"deleted": [first]}, record.after
    assert record.extra["not_deleted"] == [second], record.extra
    assert "429" in record.extra["failed"], record.extra
    assert "unsure" not in record.extra
    left = await pods_of(kube_admin, ns, "web")
    assert second in left
    assert first not in left


async def test_a_last_try_that_fails_in_its_plan_corrects_the_earlier_tries_record(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    proxy: CuttingProxy,
    proxied_kube: Any,
) -> None:
    ns = kube_namespace
    waiting = await waiting_delete(
        make_harness, make_deployment, kube_admin, ns, proxy, proxied_kube
    )
    waiting.clock.now += timedelta(seconds=61)
    proxy.throttle_get = f"/api/v1/namespaces/{ns}/pods"  # the plan's read of the pods
    await waiting.h.drain()
    step, corrected = await failed_corrected(waiting, kube_admin, ns)
    # A 429 to the read: the system was reached, and refused it (nothing acted).
    assert step.message.startswith(
        "kubernetes was reached and refused the request: 2 tries from "
    ), step.message
    assert "429" in corrected.extra["not_reached"], corrected.extra


POD_RULE = """
rules:
  - name: evict
    match: ['alertname="PodStuck"']
    target: {kind: Pod, namespace: "{{ labels.namespace }}", name: "{{ labels.pod }}"}
    steps:
      - action: kubernetes.delete_pod
        approval: never
"""


async def test_a_pod_targets_last_try_whose_read_of_the_pod_fails_corrects_the_record(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    proxy: CuttingProxy,
    proxied_kube: Any,
) -> None:
    """A Pod target: the record goes on the Deployment of its ReplicaSet. The last try's read
    of the pod is throttled; the record is found again from the pod's name and corrected."""
    ns = kube_namespace
    waiting = await waiting_delete(
        make_harness,
        make_deployment,
        kube_admin,
        ns,
        proxy,
        proxied_kube,
        rules=POD_RULE,
        labels=lambda pod: {"alertname": "PodStuck", "namespace": ns, "pod": pod},
    )
    waiting.clock.now += timedelta(seconds=61)
    pod = waiting.pod
    proxy.throttle_get = f"/api/v1/namespaces/{ns}/pods/{pod}"  # the plan's read of the pod
    await waiting.h.drain()
    step, _ = await failed_corrected(waiting, kube_admin, ns)
    assert f"Pod {ns}/{pod}: gave up after" in step.message, step.message
