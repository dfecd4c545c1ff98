"""What counts as a release of a Deployment: for the ``rolled_out_within`` conditions
(``probe.newest_rollout``) and for ``kubernetes.rollout_undo``'s default revision. Pure:
plain-dict objects, no client, no I/O.

A release is what an engineer or a CD pipeline ships: any change of the pod template (an
image, a command, a volume, an environment variable or resource a human changed), as the
revisions of ``kubectl rollout history`` record them. Two kinds of new revision are not one:

- a restart: only ``kubectl.kubernetes.io/restartedAt`` (kubectl's or remediator's
  ``rollout_restart``) or remediator's own pod-template annotations (``remediator.io/...``)
  changed. Same code, same configuration, new pods.
- remediator's own edit of one container (``kubernetes.set_resources``,
  ``kubernetes.set_env``), known by the step's write record, which the Deployment controller
  copies from the Deployment onto the ReplicaSet it creates for that template: a field whose
  value went exactly from the record's ``before`` to its ``after`` is the remediator's.

Why: an error rate that follows remediator's restart or its memory raise is not explained by a
release. Rolling back to the template before it would only restart the pods, or undo a
remediation, and leave the cause in place. Configuration a human shipped counts, though: CD
ships configuration as env and resources changes, and they break things as images do.

A rollback is a release too (it changes what runs), but one that ships an older template
again: ``kubectl rollout undo``, or anyone setting the template back, makes the old ReplicaSet
the newest revision (its ``deployment.kubernetes.io/revision-history`` lists the revisions it
held before), or makes a new one whose template differs from an older revision's only by a
restart. ``NewestRelease.returns_to`` names that older revision. Rolling back from such a
release to the revision before it would ship again the template the rollback replaced (a
human's ``kubectl rollout undo`` from x:3 to x:2, then "rolled back" to x:3), so it has no
default revision: the step is refused, and ``can_roll_back`` says so ahead. Its ReplicaSet's
``creationTimestamp`` is when that template was first shipped, not when it was rolled back
to: Kubernetes records no time of the rollback itself.

Whether revision N is a release is told by comparing it with revision N - 1's ReplicaSet: the
one with that revision, or the one whose ``deployment.kubernetes.io/revision-history`` lists it
(a rollback gave it a newer revision since; the Deployment controller's
``SetNewReplicaSetAnnotations`` records the former ones there). The controller deletes old
ReplicaSets beyond ``spec.revisionHistoryLimit`` (default 10). When revision N - 1's ReplicaSet
is gone, whether N is a release cannot be told: ``newest_release`` then says so (``known``
false) instead of taking N for one. Revision 1, the Deployment's creation, is its first
release: nothing came before it.

What ``kubernetes.rollout_undo`` goes back to without ``to_revision`` (``default_revision``),
and whether it has anything to go back to at all (``undo_target``), is decided here too, once,
for the action and for the ``can_roll_back`` / ``or_nothing_to_roll_back`` conditions that
choose between a rollback and another step: the two agree by construction. kubectl's
``rollout undo`` (``pkg/polymorphichelpers/rollback.go``, ``deploymentRevision``) takes the
second-highest revision among the kept ReplicaSets and has nothing to go back to ("no rollout
history found") when fewer than two are kept, and skips a target whose template equals the
current one ("skipped rollback (current template already matches revision N)"). Here the
revision is the one before the newest release, so there is nothing to go back to when the
newest release is revision 1 (the Deployment's creation, restarts after it or not), when the
kept revisions cannot tell the newest release (the ones before it pruned), when the newest
release is a rollback (above), or when that
revision's template is the current one, or differs from it only by a restart.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from remediations.kubernetes.objects import (
    RESTART_RUN_ANNOTATION,
    RESTARTED_AT,
    REVISION_HISTORY,
    all_containers,
    is_remediator_key,
    pod_template,
)
from remediations.kubernetes.own_edits import OWN_EDITS, same, without_own_edits

__all__ = [
    "OWN_EDITS",
    "POD_TEMPLATE_HASH",
    "NewestRelease",
    "UndoTarget",
    "comparable",
    "default_revision",
    "former_revisions",
    "is_release",
    "newest_release",
    "no_default_reason",
    "only_restart_apart",
    "undo_target",
    "without_hash",
]

POD_TEMPLATE_HASH = "pod-template-hash"


def comparable(template: Mapping[str, Any]) -> dict[str, Any]:
    """``template`` (a pod template) without what a restart changes and what the controller
    adds: the ``pod-template-hash`` label, ``restartedAt`` and ``remediator.io`` annotations;
    empty ``env`` lists and ``resources`` sections of its containers and init containers dropped.
    Equal results: the same release."""
    out = copy.deepcopy(dict(template))
    metadata = dict(out.get("metadata") or {})
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != POD_TEMPLATE_HASH}
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if k not in (RESTARTED_AT, RESTART_RUN_ANNOTATION) and not is_remediator_key(k)
    }
    for key, value in (("labels", labels), ("annotations", annotations)):
        if value:
            metadata[key] = value
        else:
            metadata.pop(key, None)
    out["metadata"] = metadata
    for _key, container in all_containers(out):
        resources = {k: v for k, v in (container.get("resources") or {}).items() if v}
        if resources:
            container["resources"] = resources
        else:
            container.pop("resources", None)
        if not container.get("env"):
            container.pop("env", None)
    return out


def only_restart_apart(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether pod templates ``a`` and ``b`` differ at most by a restart (``comparable``)."""
    return same(comparable(a), comparable(b))


def is_release(newer: Mapping[str, Any], older: Mapping[str, Any]) -> bool:
    """Whether ReplicaSet ``newer`` (the revision after ``older``) is a release: its template
    differs from ``older``'s by more than a restart and remediator's recorded edits (module
    docstring). Both are plain-dict ReplicaSets."""
    before = pod_template(older)
    return not same(comparable(without_own_edits(newer, before)), comparable(before))


@dataclass(frozen=True, slots=True)
class NewestRelease:
    """What a Deployment's kept revisions tell of its newest release (``newest_release``).

    ``known``: ``revision`` is the newest release, ``replicaset`` (a key of the history) the
    ReplicaSet that holds its template, ``previous`` the key of the one holding the revision
    before it (None for revision 1: nothing came before the creation).

    Not ``known``: revision ``revision - 1``'s ReplicaSet is gone, so whether ``revision`` is a
    release cannot be told; every kept revision after it is not one (a restart or remediator's
    own edit), so the newest release is ``revision`` or an earlier one whose ReplicaSet is gone.
    ``previous`` is None. ``bounded``: ``replicaset`` was created with ``revision`` (it never
    held an earlier one), so every ReplicaSet of an earlier revision was created before it and
    the newest release was rolled out at or before its ``creationTimestamp``; false when it was
    rolled back to (an old ReplicaSet, whose creation bounds nothing).

    ``returns_to``: a known ``revision`` is a rollback, and this is the newest earlier revision
    whose template it runs again (held by the same ReplicaSet, or one whose template differs
    from it only by a restart); None when it is not one (module docstring)."""

    revision: int
    replicaset: int
    known: bool
    previous: int | None = None
    bounded: bool = True
    returns_to: int | None = None


def former_revisions(rs: Mapping[str, Any]) -> frozenset[int]:
    """The revisions ReplicaSet ``rs`` held before its current one: its
    ``deployment.kubernetes.io/revision-history`` annotation (comma-separated, written when a
    rollback gives an old ReplicaSet a new revision); unreadable entries are ignored."""
    raw = ((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION_HISTORY) or ""
    return frozenset(int(part) for part in str(raw).split(",") if part.strip().isdigit())


def newest_release(history: Mapping[int, Mapping[str, Any]]) -> NewestRelease:
    """The newest release among ``history`` (revision -> ReplicaSet, the ReplicaSets the
    Deployment controls, keyed by their current revision), walking down from the highest
    revision: each revision is compared (``is_release``) with the ReplicaSet that held the
    revision before it (module docstring). Stops at the first release, at revision 1, or at a
    revision whose predecessor's ReplicaSet is gone (``known`` false). ValueError for an empty
    ``history``."""
    if not history:
        raise ValueError("no revision in the history")
    holder: dict[int, int] = {}
    for key, rs in history.items():
        for former in former_revisions(rs):
            holder.setdefault(former, key)
    holder.update({key: key for key in history})
    revision = max(history)
    while True:
        this = holder[revision]
        if revision <= 1:
            return NewestRelease(revision, this, known=True)
        before = holder.get(revision - 1)
        if before is None:
            held = former_revisions(history[this]) | {this}
            return NewestRelease(revision, this, known=False, bounded=min(held) == revision)
        if is_release(history[this], history[before]):
            returns_to = _returns_to(history, holder, revision)
            return NewestRelease(revision, this, True, previous=before, returns_to=returns_to)
        revision -= 1


def _returns_to(
    history: Mapping[int, Mapping[str, Any]], holder: Mapping[int, int], revision: int
) -> int | None:
    """The newest revision before ``revision`` whose template ``revision`` runs again: one
    ``revision``'s own ReplicaSet held (it was rolled back to), or one held by a ReplicaSet
    whose template differs from it only by a restart; None when there is none."""
    this = holder[revision]
    template = comparable(pod_template(history[this]))
    earlier = (
        r
        for r, key in holder.items()
        if r < revision and (key == this or same(comparable(pod_template(history[key])), template))
    )
    return max(earlier, default=None)


def default_revision(history: Mapping[int, Mapping[str, Any]]) -> int | None:
    """The revision ``rollout_undo`` goes back to without ``to_revision``: the one before the
    newest release (``newest_release``) among ``history`` (revision -> ReplicaSet, the ones the
    Deployment controls). With a release on top, kubectl's choice, the second-highest
    revision (``deploymentRevision`` in rollback.go). None when there is none: no history, the
    newest release is revision 1 (the creation), or the history cannot tell which revision is
    the newest release (the ReplicaSet before it is gone: ``revisionHistoryLimit``), or the
    newest release is a rollback (``NewestRelease.returns_to``: going back from it would ship
    again what the rollback replaced)."""
    if not history:
        return None
    newest = newest_release(history)
    return newest.previous if newest.known and newest.returns_to is None else None


def no_default_reason(history: Mapping[int, Mapping[str, Any]]) -> str:
    """Why ``default_revision`` is None for ``history``, as the object of "<the Deployment>
    has ...": "no previous revision to roll back to", and why."""
    if not history:
        return "no previous revision to roll back to"
    newest = newest_release(history)
    after = ", ".join(str(r) for r in sorted(history) if r > newest.revision)
    if not newest.known:
        told = f"revisions {after} after it " if after else ""
        return (
            "no previous revision to roll back to that is known to be before its newest "
            f"release: {told}only restarted its pods or are remediator's own changes, and the "
            f"ReplicaSet of revision {newest.revision - 1} is gone "
            f"(spec.revisionHistoryLimit), so whether revision {newest.revision} is a release, "
            "and what ran before it, cannot be told"
        )
    if newest.returns_to is not None:
        return (
            "no previous revision to roll back to that a rollback did not replace: its newest "
            f"release, revision {newest.revision}, is a rollback to the template of revision "
            f"{newest.returns_to}, so going back to revision {newest.revision - 1} would ship "
            "again the template that rollback replaced; to go back further, name the revision "
            "(to_revision)"
        )
    if not after:
        return (
            f"no previous revision to roll back to: revision {newest.revision} is its "
            "creation, its first release"
        )
    return (
        f"no previous revision to roll back to: revisions {after} after revision "
        f"{newest.revision} only restarted its pods or are remediator's own changes, not "
        f"releases, and revision {newest.revision} is its creation"
    )


def without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    """Pod template ``template`` without the controller's ``pod-template-hash`` label, as
    kubectl's rollback compares and writes it (``equalIgnoreHash``)."""
    copied = dict(template)
    metadata = dict(copied.get("metadata") or {})
    labels = dict(metadata.get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH, None)
    if labels:
        metadata["labels"] = labels
    else:
        metadata.pop("labels", None)
    copied["metadata"] = metadata
    return copied


@dataclass(frozen=True, slots=True)
class UndoTarget:
    """What ``rollout_undo`` without ``to_revision`` would roll a Deployment back to
    (``undo_target``): ``revision``, a key of the history; or None, and ``nothing`` says why
    there is nothing to roll back to (a clause: "no previous revision to roll back to: ...")."""

    revision: int | None
    nothing: str = ""


def undo_target(
    history: Mapping[int, Mapping[str, Any]], live: Mapping[str, Any], *, paused: bool = False
) -> UndoTarget:
    """What ``kubernetes.rollout_undo`` without ``to_revision`` would do to a Deployment whose
    pod template is ``live`` and whose ReplicaSets are ``history`` (revision -> ReplicaSet):
    roll back to ``default_revision``, unless the Deployment is ``paused`` (``spec.paused``:
    the action refuses it first, as kubectl does: "you cannot rollback a paused deployment;
    resume it first", ``rollback.go`` in kubectl), there is no default
    (``no_default_reason``), or its template is ``live`` already (the action is a no-op;
    kubectl's "skipped rollback") or differs from it only by a restart (the action refuses).
    Mirrors the action's checks (``rollback.RolloutUndo.plan``), in its order, so a condition on
    it and the action agree."""
    if paused:
        return UndoTarget(
            None,
            "paused (spec.paused): a paused Deployment cannot be rolled back; resume it "
            "first (kubectl rollout resume)",
        )
    to = default_revision(history)
    if to is None:
        return UndoTarget(None, no_default_reason(history))
    template, current = without_hash(pod_template(history[to])), without_hash(live)
    if template == current:
        return UndoTarget(
            None,
            f"no other template to roll back to: revision {to}, the one before its newest "
            "release, is the template it runs",
        )
    if only_restart_apart(template, current):
        return UndoTarget(
            None,
            f"no other template to roll back to: revision {to}, the one before its newest "
            "release, differs from the template it runs only by a restart",
        )
    return UndoTarget(to)
