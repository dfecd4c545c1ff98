"""Read-only probes: live facts about a target that a rule's conditions decide on.

``newest_rollout`` reads a Deployment's newest revision the way ``kubectl rollout history``
does: the ReplicaSets the Deployment controls, each with its
``deployment.kubernetes.io/revision`` annotation; the newest is the one at the Deployment's
own revision, and its ``creationTimestamp`` is when that revision was rolled out. (A rollback
makes an old ReplicaSet the newest revision again and keeps its old creationTimestamp: rolling
back is not a recent release.) Nothing is written; reads are retried like the actions' reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as k8s

from remediations.base import ActionRefused, Clients
from remediations.kubernetes.objects import (
    is_controlled_by,
    object_ref,
    revision_of,
    selector_string,
)
from remediations.kubernetes.retry import DEFAULT_RETRY, RetryPolicy, call
from remediations.targets import Target

__all__ = ["RolloutState", "newest_rollout"]


@dataclass(frozen=True, slots=True)
class RolloutState:
    """A Deployment's newest revision: its number, its ReplicaSet, when that was created."""

    revision: int
    replicaset: str
    created_at: datetime


async def newest_rollout(
    clients: Clients, target: Target, *, policy: RetryPolicy = DEFAULT_RETRY
) -> RolloutState:
    """The newest revision of the Deployment ``target``.

    Raises MissingClient (no cluster configured), ActionRefused (not a Deployment, not found,
    forbidden, no revision yet, its ReplicaSet not created yet) or TransientActionError (the
    API server stayed unreachable): the caller records why and decides nothing on it."""
    if target.kind != "Deployment":
        raise ActionRefused(f"rollout history is read from Deployments, not a {target.kind}")
    api = clients.get("kubernetes")
    apps: Any = k8s.AppsV1Api(api)
    timeout = {"_request_timeout": policy.request_timeout}
    what = object_ref(target)
    deployment = api.sanitize_for_serialization(
        await call(
            policy,
            what,
            lambda: apps.read_namespaced_deployment(target.name, target.namespace, **timeout),
        )
    )
    revision = revision_of(deployment)
    if revision is None:
        raise ActionRefused(f"{what} has no revision yet (no rollout history)")
    selector = selector_string((deployment.get("spec") or {}).get("selector") or {})
    listed = api.sanitize_for_serialization(
        await call(
            policy,
            f"ReplicaSets of {what}",
            lambda: apps.list_namespaced_replica_set(
                target.namespace, label_selector=selector, **timeout
            ),
        )
    )
    for rs in listed.get("items") or []:
        meta = rs.get("metadata") or {}
        if is_controlled_by(rs, deployment) and revision_of(rs) == revision:
            return RolloutState(revision, meta.get("name", ""), _timestamp(meta, what))
    raise ActionRefused(f"{what} is at revision {revision} but has no ReplicaSet of it yet")


def _timestamp(meta: dict[str, Any], what: str) -> datetime:
    raw = meta.get("creationTimestamp")
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ActionRefused(f"the newest ReplicaSet of {what} has no creationTimestamp") from None
