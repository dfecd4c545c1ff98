"""``kubernetes.rollout_restart``: what ``kubectl rollout restart`` does (kubectl
``pkg/polymorphichelpers/objectrestarter.go``), once per step.

Each restart step of a run restarts: a second restart step, or an ``on_failed`` restart after
the run's restart did not help, is asked for and is done. Only the same step taken up again
after a crash (or resent after a lost answer) does not restart again: it finds its own write
record on the workload (``replay``) and reports that restart.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from remediations.base import Change, Risk
from remediations.kubernetes.api import (
    ActionParams,
    KubeAction,
    KubeApi,
    WritePlan,
)
from remediations.kubernetes.objects import (
    RESTART_RUN_ANNOTATION,
    RESTARTED_AT,
    WORKLOADS,
    held_back,
    object_ref,
    pod_template,
    refuse_paused,
)
from remediations.targets import Target

__all__ = [
    "RESTARTED_AT",
    "RESTART_RUN_ANNOTATION",
    "RESTART_STEP_ANNOTATION",
    "RestartParams",
    "RolloutRestart",
]

# Set in the pod template next to restartedAt (objects.RESTART_RUN_ANNOTATION names the run):
# which step of the run restarted the pods. It also makes every restart a change of the
# template: restartedAt has kubectl's one-second resolution, and two restart steps within one
# second would otherwise write the same template and roll nothing. A remediator.io key, so the
# release check (release.py) does not take it for a release.
RESTART_STEP_ANNOTATION = "remediator.io/restart-step"


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RestartParams(ActionParams):
    """No params: a restart is a restart."""


class RolloutRestart(KubeAction[RestartParams]):
    """``kubectl rollout restart``: stamp the pod template so the controller rolls new pods."""

    name: ClassVar[str] = "kubernetes.rollout_restart"
    Params: ClassVar[type[BaseModel]] = RestartParams
    risk: ClassVar[Risk] = Risk.LOW
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset(WORKLOADS)

    def explain(self, target: Target, params: RestartParams) -> str:
        return (
            f"rollout restart {object_ref(target)} (new pods replace the old ones, as its "
            "update strategy rolls them)"
        )

    async def plan(self, api: KubeApi, target: Target, params: RestartParams) -> WritePlan:
        obj = await api.read_workload(target)
        replayed = api.replayed(obj)
        if replayed is not None:
            return replayed
        refuse_paused(obj, target, "restart")
        annotations = (pod_template(obj).get("metadata") or {}).get("annotations") or {}
        before = {"restartedAt": annotations.get(RESTARTED_AT)}
        now = _now_rfc3339()
        stamp = {
            RESTARTED_AT: now,
            RESTART_RUN_ANNOTATION: api.ctx.run_id,
            RESTART_STEP_ANNOTATION: f"{api.ctx.phase}.{api.ctx.step}",
        }
        template = {"metadata": {"annotations": stamp}}

        def observe(written: dict[str, Any]) -> Mapping[str, Any]:
            ann = (pod_template(written).get("metadata") or {}).get("annotations") or {}
            return {"restartedAt": ann.get(RESTARTED_AT)}

        # The preview names no clock time: it is bound into approvals by its hash, and the
        # same restart previewed a second later must not count as a different change.
        change = Change(
            f"restart {object_ref(target)}: set pod template annotation {RESTARTED_AT} "
            f"to the time of the restart{held_back(obj)}",
            before=before,
            after={"restartedAt": "(the time of the restart)"},
        )
        record = api.record(obj, change, after={"restartedAt": now})
        return WritePlan(change, lambda: api.patch_template(target, template, obj, record), observe)
