"""Read-only probes: live facts about a target that a rule's conditions decide on.

``newest_rollout`` reads a Deployment's newest release from its revisions as ``kubectl rollout
history`` lists them: the ReplicaSets the Deployment controls, each with its
``deployment.kubernetes.io/revision`` annotation, up to the one at the Deployment's own
revision. The newest release is the newest of them whose template changed by more than a
restart or remediator's own edits of a container (``release``: a restart, a memory raise or an
env change by remediator is not a release, and rolling it back would not undo one); its
``creationTimestamp`` is when it was rolled out. (A rollback makes an old ReplicaSet the newest
revision again and keeps its old creationTimestamp: rolling back is not a recent release.)
Nothing is written; reads are retried like the actions' reads.
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
from remediations.kubernetes.release import newest_release
from remediations.kubernetes.retry import DEFAULT_RETRY, RetryPolicy, call
from remediations.targets import Target

__all__ = ["RolloutState", "newest_rollout"]


@dataclass(frozen=True, slots=True)
class RolloutState:
    """A Deployment's newest release: its revision number, its ReplicaSet, when that was
    created (the newest revision itself unless that only restarted the pods or is remediator's
    own edit)."""

    revision: int
    replicaset: str
    created_at: datetime


async def newest_rollout(
    clients: Clients, target: Target, *, policy: RetryPolicy = DEFAULT_RETRY
) -> RolloutState:
    """The newest release of the Deployment ``target`` (module docstring).

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
    history: dict[int, dict[str, Any]] = {}
    for rs in listed.get("items") or []:
        rev = revision_of(rs)
        if is_controlled_by(rs, deployment) and rev is not None and rev <= revision:
            history[rev] = rs
    if revision not in history:
        raise ActionRefused(f"{what} is at revision {revision} but has no ReplicaSet of it yet")
    revisions = sorted(history)
    released = revisions[newest_release([history[r] for r in revisions])]
    meta = history[released].get("metadata") or {}
    return RolloutState(released, meta.get("name", ""), _timestamp(meta, what))


def _timestamp(meta: dict[str, Any], what: str) -> datetime:
    raw = meta.get("creationTimestamp")
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ActionRefused(f"the newest ReplicaSet of {what} has no creationTimestamp") from None
