"""``kubernetes.delete_pod`` and PodDisruptionBudgets that refuse, against a real
kube-apiserver whose controller-manager runs the disruption controller (it computes the
budgets' status).

A plain DELETE ignored budgets: a step could take up to ten pods of a workload at once. The
action evicts, and a budget's refusal (HTTP 429) ends the step: it says which pods it evicted,
which it did not and why, in the budget's words, and sends no more (a 429 was retried as
throttling). Without a kubelet pods stay Pending, which the Eviction API deletes without a
budget check, so the tests mark them Running and Ready through the status subresource, as a
kubelet would (tests/support/kube_budgets.py). A budget the controller has not observed yet:
test_kubernetes_delete_pod_budget_pending.py."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from remediations.base import ActionRefused, Outcome
from remediations.kubernetes.pods import DeletePod
from remediations.kubernetes.replay import WriteRecord, records_of
from remediations.targets import Target
from tests.support.kube_actions import FAST
from tests.support.kube_budgets import (
    Core,
    budget_allows,
    create_budget,
    pods_of,
    ready_pods,
    step_ctx,
    step_record,
)
from tests.support.kube_fixtures import MakeDeployment, owned_replica_sets
from tests.support.polling import eventually

pytestmark = pytest.mark.kube


async def test_a_budget_refusal_ends_the_step_naming_it_and_a_take_up_stays_in_its_pods(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three ready pods, a budget of minAvailable 2: one disruption allowed. A step of two
    pods evicts one; the second is refused by the budget, at once (no retries), and the step
    is refused saying so, as having acted. Taken up again (the same step after a crash) while
    the budget still refuses, it evicts nothing; once the replacement is ready, it evicts the
    second recorded pod and no other, and a further take-up evicts nothing more."""
    ns = kube_namespace
    await make_deployment("web", replicas=3)
    pods = await ready_pods(kube_admin, ns, "web", 3)
    await create_budget(kube_admin, ns, min_available=2)
    await budget_allows(kube_admin, ns, "web", healthy=3, allowed=1)

    original = Core.create_namespaced_pod_eviction
    sent: list[str] = []

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Core, "create_namespaced_pod_eviction", counted)
    action, target = DeletePod(FAST), Target("Deployment", ns, "web")
    ctx, params = step_ctx(kube_admin, str(uuid.uuid4())), DeletePod.Params(max_pods=2)
    with pytest.raises(ActionRefused) as refused:
        await action.run(ctx, target, params)
    first, second = sent  # one request each: the budget's 429 is not retried
    assert refused.value.may_have_acted
    assert refused.value.message == (
        f"a PodDisruptionBudget refused evicting pod {second} in namespace {ns} (The "
        "disruption budget web needs 2 healthy pods and has 2 currently); not evicted: "
        f"{second}; evicted: {first}; the budget allows more once enough of its pods are ready"
    )
    left = await pods_of(kube_admin, ns, "web")
    assert first not in left
    assert set(pods) - {first} <= left.keys()
    # The record says what was evicted; what was planned (and approved) stays its change,
    # which a take-up evicts again.
    record = await step_record(kube_admin, ns, "web", ctx.run_id)
    assert record.after == {"deleted": [first]}
    assert record.extra["not_deleted"] == [second]
    assert record.change["before"] == {"pods": [first, second]}

    sent.clear()
    with pytest.raises(ActionRefused) as still:
        await action.run(ctx, target, params)
    assert sent == [first, second]  # only the recorded pods; the first is gone
    assert still.value.may_have_acted  # the recorded first pod went, by the earlier attempt
    assert f"not evicted: {second}; evicted: none; already gone: {first};" in still.value.message
    record = await step_record(kube_admin, ns, "web", ctx.run_id)
    assert (record.after, record.extra["not_deleted"]) == ({"deleted": [first]}, [second])

    # The replacement becomes ready: the budget allows one disruption again.
    await ready_pods(kube_admin, ns, "web", 3)
    await budget_allows(kube_admin, ns, "web", healthy=3, allowed=1)
    taken_up = await action.run(ctx, target, params)
    assert taken_up.outcome is Outcome.OK, taken_up.message
    assert taken_up.after == {"deleted": [first, second]}
    assert f"deleted {second} now; already gone: {first}" in taken_up.message
    now = await ready_pods(kube_admin, ns, "web", 3)
    await budget_allows(kube_admin, ns, "web", healthy=3, allowed=1)

    again = await action.run(ctx, target, params)
    assert again.outcome is Outcome.OK, again.message
    assert "its pods were already gone" in again.message
    assert await ready_pods(kube_admin, ns, "web", 3) == now  # the step's limit holds: two


async def test_a_refusal_of_the_first_pod_leaves_a_record_of_no_deletion(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The step's record goes on the Deployment before the evictions. Refused at the first
    pod, it stayed saying ``{"deleted": [pod]}`` though nothing was evicted. It now says
    nothing was, and why (kept, not removed: the Deployment controller's copy on the
    ReplicaSet, which it never removes, follows the corrected one)."""
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    pods = await ready_pods(kube_admin, ns, "web", 2)
    await create_budget(kube_admin, ns, min_available=2)
    await budget_allows(kube_admin, ns, "web", healthy=2, allowed=0)
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))
    with pytest.raises(ActionRefused) as refused:
        await DeletePod(FAST).run(ctx, Target("Deployment", ns, "web"), DeletePod.Params())
    assert not refused.value.may_have_acted
    [pod] = [p for p in pods if f"not evicted: {p};" in refused.value.message]
    record = await step_record(kube_admin, ns, "web", ctx.run_id)
    assert record.after == {"deleted": []}
    assert record.extra["not_deleted"] == [pod]
    assert "The disruption budget web needs 2 healthy pods" in record.extra["refused"]

    async def copies() -> list[WriteRecord]:
        [rs] = await owned_replica_sets(kube_admin, ns, "web")
        copied = records_of(kube_admin.sanitize_for_serialization(rs))
        return [r for r in copied.values() if r.run_id == ctx.run_id]

    await eventually(
        copies,
        lambda found: [r.after for r in found] == [{"deleted": []}],
        what="the ReplicaSet's copy of the corrected record",
    )
    assert sorted(await pods_of(kube_admin, ns, "web")) == pods


async def test_a_pod_two_budgets_select_is_refused_at_once(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Eviction API does not support a pod that two budgets select: it answers 500, which
    was retried as a server fault and ended as one. One request, refused saying why."""
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    [pod] = await ready_pods(kube_admin, ns, "web", 1)
    for name in ("web-a", "web-b"):
        await create_budget(kube_admin, ns, name, max_unavailable=1)
        await budget_allows(kube_admin, ns, name, healthy=1, allowed=1)
    original = Core.create_namespaced_pod_eviction
    sent: list[str] = []

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Core, "create_namespaced_pod_eviction", counted)
    target = Target("Deployment", ns, "web")
    with pytest.raises(ActionRefused) as refused:
        await DeletePod(FAST).run(
            step_ctx(kube_admin, str(uuid.uuid4())), target, DeletePod.Params()
        )
    assert sent == [pod]
    assert not refused.value.may_have_acted
    assert refused.value.message == (
        f"a PodDisruptionBudget refused evicting pod {pod} in namespace {ns} (This pod has "
        "more than one PodDisruptionBudget, which the eviction subresource does not support); "
        f"not evicted: {pod}; evicted: none; the Eviction API evicts no pod that two budgets "
        "select: leave one selecting it"
    )
    assert pod in await pods_of(kube_admin, ns, "web")
