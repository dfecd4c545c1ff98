"""``kubernetes.rollout_undo``: what ``kubectl rollout undo`` does, bound to the revision it
was planned at.

Mirrors kubectl's ``DeploymentRollbacker`` (``pkg/polymorphichelpers/rollback.go``; research
§7.2): the ReplicaSets the Deployment controls, by their revision annotation; the target's pod
template without ``pod-template-hash``; one JSON Patch that replaces the template and gives the
Deployment the target ReplicaSet's annotations (its ``kubernetes.io/change-cause`` among them,
so ``kubectl rollout history`` names the revision after what it runs), keeping the Deployment's
own values of kubectl's skip-list keys. Differences, each for a reason:

- a JSON Patch ``test`` on the revision first, so a Deployment released again since the plan
  is refused rather than flipped;
- remediator's own annotations (``remediator.io/...``: the count ``scale`` last wrote, every
  step's write record) are the Deployment's, never the ReplicaSet's stale copies, plus this
  step's stamp and write record; keys are added and removed one by one, and the patch is
  conditioned on the resourceVersion read (the record's slot was chosen from it), so an
  annotation someone adds between the read and the write is not erased: the step is planned
  again instead;
- the default revision is the one before the newest *release* (``release.default_revision``):
  the same as kubectl's second-highest revision unless the newest revisions only restarted the
  pods or are remediator's own edits, where kubectl's would only restart them or undo a
  remediation; when the newest release is the Deployment's creation, or itself a rollback
  (the revision before it is what that rollback replaced: going back would ship it again), or
  the ReplicaSets that would tell which revision is the newest release are gone
  (``revisionHistoryLimit``), there is no default and the step is refused, saying so.
  ``release.undo_target`` says the same ahead of time, for the ``can_roll_back`` conditions
  that choose the step;
- a target whose template differs from the current one only by a restart is refused: rolling
  back to it would only restart the pods;
- an approved rollback (``ActionContext.approved``) whose ReplicaSet's template the
  Deployment runs already is a noop, found by the ReplicaSet's name: rolled back by hand, the
  controller renumbers that ReplicaSet, and the revisions the approval names are gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from remediations.base import ActionError, ActionRefused, Change, Risk
from remediations.kubernetes.api import JSON_PATCH, ActionParams, KubeAction, KubeApi, WritePlan
from remediations.kubernetes.api_errors import is_api_exception
from remediations.kubernetes.objects import (
    REVISION,
    REVISION_HISTORY,
    is_remediator_key,
    json_pointer,
    object_ref,
    pod_template,
    refuse_paused,
    revision_of,
    template_images,
)
from remediations.kubernetes.record_size import merged
from remediations.kubernetes.release import (
    default_revision,
    no_default_reason,
    only_restart_apart,
    without_hash,
)
from remediations.params import Integer
from remediations.targets import Target

__all__ = [
    "ROLLBACK_SKIP",
    "RolloutUndo",
    "UndoParams",
    "default_revision",
    "rolled_back_annotations",
]

# kubectl's annotationsToSkip (rollback.go): the Deployment keeps its own values of these.
ROLLBACK_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


def rolled_back_annotations(
    deployment: Mapping[str, str], replicaset: Mapping[str, str]
) -> dict[str, str]:
    """The Deployment's annotations after a rollback to ``replicaset`` (both: annotation
    maps): kubectl's (the ReplicaSet's, with the Deployment's own values of ``ROLLBACK_SKIP``),
    except that remediator's keys are the Deployment's (``is_remediator_key``); the caller
    adds this step's stamp and write record."""
    carried = {
        k: v for k, v in replicaset.items() if k not in ROLLBACK_SKIP and not is_remediator_key(k)
    }
    kept = {k: v for k, v in deployment.items() if k in ROLLBACK_SKIP or is_remediator_key(k)}
    return {**carried, **kept}


class UndoParams(ActionParams):
    """``to_revision`` picks the revision (default: the one before the newest release, see the
    module docstring).
    ``expected_revision``, when given, refuses the rollback unless the Deployment is still at
    that revision.

    Both come from the rule's params. An approved step is bound another way: ``run()`` plans
    again from the Deployment as it is then and refuses unless that plan's preconditions
    (``current_revision``, ``to_revision``, ``replicaset``) equal the approved preview's
    (``ActionContext.approved``), and the write's JSON Patch ``test`` on the revision catches
    a change between that read and the write. So an approved rollback lands on the revision
    the engineer saw, or does nothing. One whose approved ReplicaSet's template runs already
    (done by hand, renumbered since) is a noop (``_approved_in_place``).
    """

    to_revision: Integer | None = Field(default=None, ge=1)
    expected_revision: Integer | None = Field(default=None, ge=1)


class RolloutUndo(KubeAction[UndoParams]):
    """``kubectl rollout undo`` bound to a revision: JSON Patch with a ``test`` on the revision
    (see the module docstring for what it writes). Needs ``get`` and ``patch`` on Deployments
    and ``list`` on ReplicaSets. Refuses (ActionRefused) a paused Deployment, an unknown or
    restart-only target revision, a history with no earlier release (or one that cannot tell
    which revision is the newest release, or whose newest release is a rollback), and a
    Deployment whose revision moved since the plan; a write whose answer was lost but which
    landed (this step's write record is on the Deployment) is reported done with the record's
    after."""

    name: ClassVar[str] = "kubernetes.rollout_undo"
    Params: ClassVar[type[BaseModel]] = UndoParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment"})

    def explain(self, target: Target, params: UndoParams) -> str:
        to = (
            f"revision {params.to_revision}"
            if params.to_revision
            else "the revision before its newest release"
        )
        return f"roll {object_ref(target)} back to {to}"

    async def plan(self, api: KubeApi, target: Target, params: UndoParams) -> WritePlan:
        obj = await api.read_workload(target)
        replayed = api.replayed(obj)
        if replayed is not None:
            return replayed
        refuse_paused(obj, target, "roll back")
        current = revision_of(obj)
        if current is None:
            raise ActionRefused(f"{object_ref(target)} has no revision yet (no rollout history)")
        if params.expected_revision is not None and params.expected_revision != current:
            raise ActionRefused(
                f"revision changed: the rollback was planned at revision "
                f"{params.expected_revision} of {object_ref(target)}, which is now at {current}"
            )
        history = await self._history(api, target, obj)
        live = without_hash(pod_template(obj))
        in_place = _approved_in_place(target, api.ctx.approved, history, live, current)
        if in_place is not None:
            return in_place
        to = self._target_revision(target, params, history)
        rs = history[to]
        rs_name = (rs.get("metadata") or {}).get("name")
        template = without_hash(pod_template(rs))
        before = {"revision": current, "images": template_images(live)}
        after = {"to_revision": to, "replicaset": rs_name, "images": template_images(template)}
        preconditions = {
            "current_revision": str(current),
            "to_revision": str(to),
            "replicaset": rs_name,
        }
        if template == live:
            # Its after is its before, as every noop's: an approved rollback someone already
            # did by hand then runs as a noop instead of asking to approve it again
            # (pipeline.approve's "changes nothing"). The preconditions still name the
            # revision and ReplicaSet, so the noop stays bound to the state it saw.
            message = f"{object_ref(target)} already runs the template of revision {to}"
            return WritePlan.noop(Change(message, before, before, preconditions), message)
        if only_restart_apart(template, live):
            raise ActionRefused(
                f"revision {to} of {object_ref(target)} differs from the current template only "
                "by a restart (restartedAt or remediator's annotations): rolling back to it "
                "would only restart the pods"
            )
        change = Change(
            f"roll {object_ref(target)} back from revision {current} to revision {to} "
            f"(ReplicaSet {rs_name})",
            before,
            after,
            preconditions,
        )
        live_annotations: dict[str, str] = (obj.get("metadata") or {}).get("annotations") or {}
        wanted = rolled_back_annotations(
            live_annotations, (rs.get("metadata") or {}).get("annotations") or {}
        )
        # The undo leaves the ReplicaSet's annotations, not the live ones: the Deployment's
        # room is checked against those alone (AnnotationsTooLarge), so a rollback away from a
        # release that brought a large annotation is not refused for it. The controller then
        # reuses ``rs`` and copies them on top of what it keeps there (old per-step write
        # records among them, which ``wanted`` leaves out): checked as set_env checks it.
        own = api.record(obj, change, leaves=wanted, replica_sets=[rs])
        # None: an old write record to drop (it was there when the plan read the object).
        wanted = merged(wanted, {**api.stamp(), **own})
        ops: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": f"/metadata/annotations/{json_pointer(REVISION)}",
                "value": str(current),
            },
            {"op": "replace", "path": "/spec/template", "value": template},
        ]
        # Key by key rather than kubectl's replace of the whole map: only what this plan
        # means to change is touched.
        for key in sorted(set(live_annotations) - set(wanted)):
            ops.append({"op": "remove", "path": f"/metadata/annotations/{json_pointer(key)}"})
        for key, value in sorted(wanted.items()):
            if live_annotations.get(key) != value:
                path = f"/metadata/annotations/{json_pointer(key)}"
                ops.append({"op": "add", "path": path, "value": value})
        # Set when an earlier attempt of this write landed although its answer was lost.
        landed: dict[str, Any] = {}

        async def write() -> dict[str, Any]:
            try:
                # With a record, conditioned on the resourceVersion read: the record's slot was
                # chosen from it (WriteConflict: planned again, KubeAction.run).
                return await api.patch_read(target, obj, ops, JSON_PATCH, conditioned=bool(own))
            except ActionRefused as exc:
                cause = exc.__cause__
                if not (is_api_exception(cause) and cause.status == 422):
                    raise
                # A failed `test` or `remove` op is a bare 422 "error in our request" without
                # details. This step's own write record says an earlier attempt landed (its
                # answer was lost, and the controller has bumped the revision since); else the
                # revision tells whether the Deployment moved on since the plan was made.
                try:
                    fresh = await api.read_workload(target)
                except ActionError as failed:
                    # Unread, the 422 may still follow a try that landed (its answer lost).
                    failed.may_have_acted = True
                    raise
                record = api.earlier_write(fresh)
                if record is not None:
                    landed.update(record.after)
                    return fresh
                now = revision_of(fresh)
                if now != current:
                    raise ActionRefused(
                        f"revision changed: {object_ref(target)} is at revision {now}, not "
                        f"{current} as planned; not rolling back"
                    ) from cause
                raise

        return WritePlan(
            change,
            write,
            lambda written: (
                dict(landed)
                or {
                    "to_revision": to,
                    "replicaset": rs_name,
                    "images": template_images(pod_template(written)),
                }
            ),
        )

    async def _history(
        self, api: KubeApi, target: Target, obj: Mapping[str, Any]
    ) -> dict[int, dict[str, Any]]:
        """Revision -> ReplicaSet, of the ReplicaSets the Deployment ``obj`` controls (kubectl's
        ``deploymentutil.GetAllReplicaSets``: ``KubeApi.controlled_replica_sets``)."""
        history: dict[int, dict[str, Any]] = {}
        for rs in await api.controlled_replica_sets(target, obj):
            rev = revision_of(rs)
            if rev is not None:
                history[rev] = rs
        return history

    def _target_revision(
        self, target: Target, params: UndoParams, history: Mapping[int, Mapping[str, Any]]
    ) -> int:
        if params.to_revision is not None:
            if params.to_revision not in history:
                raise ActionRefused(
                    f"no rollout history found for revision {params.to_revision} of "
                    f"{object_ref(target)}; known revisions: "
                    f"{', '.join(map(str, sorted(history))) or 'none'}"
                )
            return params.to_revision
        to = default_revision(history)
        if to is None:
            raise ActionRefused(f"{object_ref(target)} has {no_default_reason(history)}")
        return to


def _approved_in_place(
    target: Target,
    approved: Mapping[str, Any] | None,
    history: Mapping[int, Mapping[str, Any]],
    live: Mapping[str, Any],
    current: int,
) -> WritePlan | None:
    """The noop of an approved rollback (``approved``: its preconditions) whose ReplicaSet's
    template is the one the Deployment runs (``live``, without ``pod-template-hash``):
    someone rolled back by hand. The Deployment controller then gives that ReplicaSet the
    newest revision (research §7.2), so the revision numbers the approval names are gone and
    a plan from scratch would refuse (no such revision; or no default, the newest release
    being a rollback). Found by the ReplicaSet's name, compared by template: its after is
    its before, and its preconditions name the revision and ReplicaSet as they are now. None
    when nothing was approved, or the live template is another one (planned as ever: moved
    on, it is refused or its approval superseded)."""
    name = (approved or {}).get("replicaset")
    if not name:
        return None
    for revision, rs in history.items():
        if (rs.get("metadata") or {}).get("name") != name:
            continue
        if without_hash(pod_template(rs)) != live:
            return None
        before = {"revision": current, "images": template_images(live)}
        preconditions = {
            "current_revision": str(current),
            "to_revision": str(revision),
            "replicaset": name,
        }
        message = (
            f"{object_ref(target)} already runs the template of ReplicaSet {name} (revision "
            f"{revision}), the one the rollback was approved to"
        )
        return WritePlan.noop(Change(message, before, before, preconditions), message)
    return None
