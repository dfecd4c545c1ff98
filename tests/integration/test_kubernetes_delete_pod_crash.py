"""``kubernetes.delete_pod`` against a real kube-apiserver + controller-manager: what it
reports after a lost answer, and what a take-up after a crash does (on a Pod target, with a
controller replacing the pod: test_kubernetes_delete_pod_taken_up.py).

The control plane has no kubelet: pods stay Pending, which the Eviction API deletes without a
budget check, and a pod never scheduled is removed at once (no graceful termination), so
"deleted" reads back as "gone"."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from remediations.base import Outcome
from remediations.kubernetes.pods import DeletePod
from remediations.targets import Target
from tests.support.kube_actions import FAST
from tests.support.kube_fixtures import MakeDeployment
from tests.support.kube_pods import (
    Core,
    live_pods,
    make_owned_pod,
    make_workload,
    pods_of,
    settled_pods,
    step_ctx,
)

pytestmark = pytest.mark.kube


class Crash(BaseException):
    """The worker dying mid-step: not an Exception, so nothing in the action catches it."""


async def test_a_delete_whose_answer_was_lost_is_reported_deleted(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first eviction reaches the server and deletes the pod; its answer is lost (a
    timeout), and the retry gets 404."""
    ns = kube_namespace
    await make_deployment("web")
    (uid, name), *_ = (await settled_pods(kube_admin, ns, "web", 1)).items()
    original = Core.create_namespaced_pod_eviction
    sent: list[str] = []

    async def lose_first_answer(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        answer = await original(self, *args, **kwargs)
        if len(sent) == 1:
            raise TimeoutError  # applied by the server, answer never read
        return answer

    monkeypatch.setattr(Core, "create_namespaced_pod_eviction", lose_first_answer)
    result = await DeletePod(FAST).run(
        step_ctx(kube_admin, str(uuid.uuid4()), step=None),
        Target("Deployment", ns, "web"),
        DeletePod.Params(),
    )

    assert sent == [name, name]  # sent, lost, sent again
    assert result.outcome is Outcome.OK, result.message
    assert result.after == {"deleted": [name]}
    assert uid not in await live_pods(kube_admin, ns)


async def test_a_take_up_after_a_crash_before_the_deletes_deletes_the_recorded_pods(
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker dies after the write record reached the Deployment and before any eviction:
    the take-up (same run, same step) evicts the pod the record names, not a replacement."""
    ns = kube_namespace
    await make_deployment("web", replicas=2)
    before = await settled_pods(kube_admin, ns, "web", 2)
    action, target = DeletePod(), Target("Deployment", ns, "web")
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))

    async def die(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise Crash("killed after the record patch, before the delete")

    with monkeypatch.context() as patched:
        patched.setattr(Core, "create_namespaced_pod_eviction", die)
        with pytest.raises(Crash):
            await action.run(ctx, target, DeletePod.Params())
    assert await pods_of(kube_admin, ns, "web") == before  # nothing deleted yet

    taken_up = await action.run(ctx, target, DeletePod.Params())
    assert taken_up.outcome is Outcome.OK, taken_up.message
    [victim] = taken_up.before["pods"]
    live = await live_pods(kube_admin, ns)
    assert victim not in live.values()
    assert taken_up.after == {"deleted": [victim]}
    assert f"deleted {victim} now" in taken_up.message
    kept = {u for u, n in before.items() if n != victim}
    assert kept <= live.keys()  # the other pod stays

    # Once more (a crash after the deletes): the pod is gone, nothing else is deleted.
    replacements = await settled_pods(kube_admin, ns, "web", 2)
    again = await action.run(ctx, target, DeletePod.Params())
    assert again.outcome is Outcome.OK, again.message
    assert again.after == {"deleted": [victim]}
    assert "already applied by this run before a restart" in again.message
    assert "its pods were already gone" in again.message
    assert await pods_of(kube_admin, ns, "web") == replacements


async def test_a_take_up_never_deletes_a_statefulset_pods_namesake(
    kube_admin: Any, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A StatefulSet's replacement pod has the deleted pod's name and another uid: the
    take-up's eviction, bound to the recorded uid, gets a uid conflict and leaves it alone.

    The test control plane runs no StatefulSet controller, so the test creates db-0 (and its
    replacement) itself, controlled by the StatefulSet as that controller would."""
    ns = kube_namespace
    labels = {"app": "db"}
    sts_uid = await make_workload(kube_admin, ns, "StatefulSet", "db", labels)

    async def create_db_0() -> str:
        return await make_owned_pod(kube_admin, ns, "db-0", labels, "StatefulSet", sts_uid)

    first = await create_db_0()
    action, target = DeletePod(), Target("Pod", ns, "db-0")
    ctx = step_ctx(kube_admin, str(uuid.uuid4()))

    async def die(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise Crash("killed after the record patch, before the delete")

    with monkeypatch.context() as patched:
        patched.setattr(Core, "create_namespaced_pod_eviction", die)
        with pytest.raises(Crash):
            await action.run(ctx, target, DeletePod.Params())
    assert await live_pods(kube_admin, ns) == {first: "db-0"}

    taken_up = await action.run(ctx, target, DeletePod.Params())
    assert await live_pods(kube_admin, ns) == {}
    assert (taken_up.outcome, taken_up.after) == (Outcome.OK, {"deleted": ["db-0"]})
    assert "deleted db-0 now" in taken_up.message

    second = await create_db_0()  # the StatefulSet's replacement: same name, new uid
    again = await action.run(ctx, target, DeletePod.Params())
    assert (again.outcome, again.after) == (Outcome.OK, {"deleted": ["db-0"]})
    assert "its pods were already gone" in again.message
    assert await live_pods(kube_admin, ns) == {second: "db-0"}
