"""Read-only probes: live facts about a target that a rule's conditions decide on.

``newest_rollout`` reads a Deployment's newest release from its revisions as ``kubectl rollout
history`` lists them: the ReplicaSets the Deployment controls, each with its
``deployment.kubernetes.io/revision`` annotation, up to the one at the Deployment's own
revision. The newest release is the newest of them whose template changed by more than a
restart or remediator's own edits of a container (``release``: a restart, a memory raise or an
env change by remediator is not a release, and rolling it back would not undo one); its
``creationTimestamp`` is when it was rolled out. A rollback (an old ReplicaSet made the newest
revision again, or a template set back to an older one's) is a release that ships an older
template again (``returns_to``): its ReplicaSet's creationTimestamp is when that template was
first shipped, not when it was rolled back to, which Kubernetes does not record; and it has
nothing to roll back to, as rolling back would ship again what the rollback replaced.
When the ReplicaSets that would tell are gone (``spec.revisionHistoryLimit``: the one before
the oldest kept revision, and no kept revision after it is a release), the state says so
(``known`` false) rather than take that revision for the release. The state also says what
``kubernetes.rollout_undo`` would roll back to, or why there is nothing to roll back to
(``release.undo_target``: the action's own choice, so the condition and the action agree; a
paused Deployment has nothing to roll back to, as the action refuses it).
Nothing is written; reads are retried like the actions' reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from remediations.base import ActionRefused, Clients
from remediations.kubernetes.objects import (
    is_controlled_by,
    object_ref,
    pod_template,
    revision_of,
    selector_string,
)
from remediations.kubernetes.release import newest_release, undo_target
from remediations.kubernetes.retry import DEFAULT_RETRY, RetryPolicy, call
from remediations.request_timeout import request_timeout
from remediations.targets import Target

__all__ = ["RolloutState", "newest_rollout"]


@dataclass(frozen=True, slots=True)
class RolloutState:
    """A Deployment's newest release: its revision number, its ReplicaSet, when that was
    created (the newest revision itself unless that only restarted the pods or is remediator's
    own edit).

    ``known`` false: the history cannot tell (``release.NewestRelease``): ``revision`` (its
    ReplicaSet, created at ``created_at``) or an earlier one whose ReplicaSet is gone is the
    newest release. ``bounded``: the release was then rolled out at or before ``created_at``.

    ``rollback_to``: the revision ``kubernetes.rollout_undo`` (no ``to_revision``) would roll
    back to; None when there is nothing to roll back to, and ``no_rollback`` says why
    (``release.undo_target``). ``returns_to``: the newest release is a rollback to the template
    of that earlier revision (``release.NewestRelease``)."""

    revision: int
    replicaset: str
    created_at: datetime
    known: bool = True
    bounded: bool = True
    rollback_to: int | None = None
    no_rollback: str = ""
    returns_to: int | None = None


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
    # Imported past MissingClient: without a client the library is never loaded (``api_errors``).
    from kubernetes_asyncio import client as k8s

    apps: Any = k8s.AppsV1Api(api)
    timeout = {"_request_timeout": request_timeout(policy.request_timeout)}
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
    newest = newest_release(history)
    paused = bool((deployment.get("spec") or {}).get("paused"))
    undo = undo_target(history, pod_template(deployment), paused=paused)
    meta = history[newest.replicaset].get("metadata") or {}
    return RolloutState(
        newest.revision,
        meta.get("name", ""),
        _timestamp(meta, what),
        known=newest.known,
        bounded=newest.bounded,
        rollback_to=undo.revision,
        no_rollback=undo.nothing,
        returns_to=newest.returns_to,
    )


def _timestamp(meta: dict[str, Any], what: str) -> datetime:
    raw = meta.get("creationTimestamp")
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ActionRefused(f"the newest ReplicaSet of {what} has no creationTimestamp") from None
