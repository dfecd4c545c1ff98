"""``kubernetes.rollout_undo``: what ``kubectl rollout undo`` does, bound to the revision it
was planned at."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, Field

from remediations.base import ActionRefused, Change, Risk
from remediations.kubernetes.api import JSON_PATCH, ActionParams, KubeAction, KubeApi, WritePlan
from remediations.kubernetes.objects import (
    REVISION,
    object_ref,
    pod_template,
    refuse_paused,
    revision_of,
    template_images,
)
from remediations.params import Integer
from remediations.targets import Target

__all__ = ["RolloutUndo", "UndoParams"]

POD_TEMPLATE_HASH = "pod-template-hash"


def _json_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class UndoParams(ActionParams):
    """``to_revision`` picks the revision (default: the one before the current one).
    ``expected_revision``, when given, refuses the rollback unless the Deployment is still at
    that revision.

    Both come from the rule's params. An approved step is bound another way: ``run()`` plans
    again from the Deployment as it is then and refuses unless that plan's preconditions
    (``current_revision``, ``to_revision``, ``replicaset``) equal the approved preview's
    (``ActionContext.approved``), and the write's JSON Patch ``test`` on the revision catches
    a change between that read and the write. So an approved rollback lands on the revision
    the engineer saw, or does nothing.
    """

    to_revision: Integer | None = Field(default=None, ge=1)
    expected_revision: Integer | None = Field(default=None, ge=1)


def _without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    copy = dict(template)
    metadata = dict(copy.get("metadata") or {})
    labels = dict(metadata.get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH, None)
    if labels:
        metadata["labels"] = labels
    else:
        metadata.pop("labels", None)
    copy["metadata"] = metadata
    return copy


class RolloutUndo(KubeAction[UndoParams]):
    """``kubectl rollout undo`` bound to a revision: JSON Patch with a ``test`` on the revision."""

    name: ClassVar[str] = "kubernetes.rollout_undo"
    Params: ClassVar[type[BaseModel]] = UndoParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment"})

    def explain(self, target: Target, params: UndoParams) -> str:
        to = f"revision {params.to_revision}" if params.to_revision else "the previous revision"
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
        history: dict[int, dict[str, Any]] = {}
        for rs in await api.controlled_replica_sets(target, obj):
            rev = revision_of(rs)
            if rev is not None:
                history[rev] = rs
        if params.to_revision is not None:
            to = params.to_revision
            if to not in history:
                raise ActionRefused(
                    f"no rollout history found for revision {to} of {object_ref(target)}; "
                    f"known revisions: {', '.join(map(str, sorted(history))) or 'none'}"
                )
        else:
            older = sorted(r for r in history if r < current)
            if not older:
                raise ActionRefused(
                    f"{object_ref(target)} has no previous revision to roll back to"
                )
            to = older[-1]
        rs = history[to]
        rs_name = (rs.get("metadata") or {}).get("name")
        template = _without_hash(pod_template(rs))
        before = {"revision": current, "images": template_images(pod_template(obj))}
        after = {"to_revision": to, "replicaset": rs_name, "images": template_images(template)}
        preconditions = {
            "current_revision": str(current),
            "to_revision": str(to),
            "replicaset": rs_name,
        }
        if template == _without_hash(pod_template(obj)):
            return WritePlan.noop(
                Change(
                    f"{object_ref(target)} already runs the template of revision {to}",
                    before,
                    after,
                    preconditions,
                ),
                f"{object_ref(target)} already runs the template of revision {to}",
            )
        change = Change(
            f"roll {object_ref(target)} back from revision {current} to revision {to} "
            f"(ReplicaSet {rs_name})",
            before,
            after,
            preconditions,
        )
        ops: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": f"/metadata/annotations/{_json_pointer(REVISION)}",
                "value": str(current),
            },
            {"op": "replace", "path": "/spec/template", "value": template},
        ]
        annotations: dict[str, str | None] = {**api.stamp(), **api.record(obj, change)}
        for key, value in annotations.items():
            path = f"/metadata/annotations/{_json_pointer(key)}"
            # None: an old write record to drop (it was there when the plan read the object).
            ops.append(
                {"op": "remove", "path": path}
                if value is None
                else {"op": "add", "path": path, "value": value}
            )

        async def write() -> dict[str, Any]:
            try:
                return await api.patch_workload(target, ops, JSON_PATCH)
            except ActionRefused as exc:
                cause = exc.__cause__
                if not (isinstance(cause, ApiException) and cause.status == 422):
                    raise
                # A failed `test` op is a bare 422 "error in our request" without details;
                # the revision tells whether the Deployment moved on since the plan was made.
                now = revision_of(await api.read_workload(target))
                if now != current:
                    raise ActionRefused(
                        f"revision changed: {object_ref(target)} is at revision {now}, not "
                        f"{current} as planned; not rolling back"
                    ) from cause
                raise

        return WritePlan(
            change,
            write,
            lambda written: {
                "to_revision": to,
                "replicaset": rs_name,
                "images": template_images(pod_template(written)),
            },
        )
