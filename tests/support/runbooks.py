"""What the runbook end-to-end tests share: the kube-state-metrics series that map pods to their
Deployment (the shipped alerts aggregate through them), waiting for runs (through
tests/support/polling), a run's steps, and reading a Deployment.

The series are the ones kube-state-metrics exports (``kube_pod_owner``,
``kube_replicaset_owner``), set on the test's metrics endpoint; the pods are named like a
ReplicaSet's pods, and need not exist (the control plane has no kubelet).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client as k8s

from tests.support.peers import MetricsEndpoint, Sink
from tests.support.polling import eventually, eventually_not_none
from tests.support.remediator import Api

__all__ = ["approve", "deployment", "own_pods", "run_of", "run_steps", "until"]


def own_pods(metrics: MetricsEndpoint, namespace: str, deployment: str, count: int) -> list[str]:
    """Serve ``count`` pods owned by a ReplicaSet of ``namespace/deployment``; their names."""
    replicaset = f"{deployment}-5d8f7c9b6"
    pods = [f"{replicaset}-{i:05d}" for i in range(count)]
    owner = {"owner_is_controller": "true", "namespace": namespace}
    metrics.set(
        "kube_replicaset_owner",
        {**owner, "replicaset": replicaset, "owner_kind": "Deployment", "owner_name": deployment},
        1,
    )
    for pod in pods:
        metrics.set(
            "kube_pod_owner",
            {**owner, "pod": pod, "owner_kind": "ReplicaSet", "owner_name": replicaset},
            1,
        )
    return pods


async def until(what: str, holds: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    """Poll ``holds`` until it is true; AssertionError naming ``what`` after ``timeout_s``
    seconds. The probes read a live system (PostgreSQL, the API server): every quarter second."""
    await eventually(holds, timeout_s=timeout_s, interval_s=0.25, what=what)


async def run_of(
    api: Api,
    rule: str,
    target: str,
    outcome: str,
    *,
    what: str,
    index: int = 0,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """The ``index``-th run (oldest first) of ``rule`` on ``target`` (``Kind/ns/name`` or
    ``Kind/name``) once its outcome is ``outcome``, with its steps."""

    async def probe() -> dict[str, Any] | None:
        runs = list(reversed(await api.runs(rule=rule, target=target)))
        if len(runs) <= index:
            return None
        run = await api.run(runs[index]["id"])
        return run if run["outcome"] == outcome else None

    try:
        return await eventually_not_none(probe, timeout_s=timeout_s, interval_s=0.25, what=what)
    except AssertionError:
        runs = await api.runs(rule=rule, target=target)
        shown = [(r["id"], r["outcome"], r.get("error"), r.get("refusal_reason")) for r in runs]
        raise AssertionError(f"timed out waiting for {what}; runs of {rule}: {shown}") from None


async def resolve_steps(
    api: Api, run: dict[str, Any], *, what: str, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """The steps ``run`` took on its resolve path (its restores), once none is pending: a run
    is verified when its alert resolves, and its restore runs after that conclusion."""

    async def probe() -> list[dict[str, Any]] | None:
        steps = [s for s in (await api.run(run["id"]))["steps"] if s["phase"] == "resolve"]
        return steps if steps and all(s["outcome"] != "pending" for s in steps) else None

    return await eventually_not_none(probe, timeout_s=timeout_s, interval_s=0.25, what=what)


def run_steps(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(action, outcome) of each step the run took on its way in (not the resolve path)."""
    return [(s["action"], s["outcome"]) for s in run["steps"] if s["phase"] == "run"]


async def deployment(kube_admin: Any, namespace: str, name: str) -> Any:
    """The Deployment as the API server has it now."""
    return await k8s.AppsV1Api(kube_admin).read_namespaced_deployment(name, namespace)


async def approve(api: Api, sink: Sink, run_id: str, action: str) -> dict[str, Any]:
    """Approve, as the operator of ``api``, the step ``action`` of run ``run_id``, once the
    approval channel was asked (the request names it, with a signed link); the approval."""
    notice = await sink.wait_for(
        f"asking to approve {action} of run {run_id}",
        lambda body: (
            body.get("kind") == "approval.requested" and body["approval"]["run_id"] == run_id
        ),
    )
    approval = notice["approval"]
    assert approval["action"] == action, notice
    assert approval["state"] == "pending", notice
    assert notice["link"], "keys and an external URL are configured: the request has a link"
    await api.decide(approval["id"], "approve", "e2e: the runbook says so")
    return dict(approval)
