"""``kubernetes.rollout_restart``: what ``kubectl rollout restart`` does, once per run."""

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
    object_ref,
    pod_template,
    refuse_paused,
)
from remediations.targets import Target

__all__ = ["RESTARTED_AT", "RESTART_RUN_ANNOTATION", "RestartParams", "RolloutRestart"]


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
        return f"rollout restart {object_ref(target)} (new pods replace the old ones)"

    async def plan(self, api: KubeApi, target: Target, params: RestartParams) -> WritePlan:
        obj = await api.read_workload(target)
        replayed = api.replayed(obj)
        if replayed is not None:
            return replayed
        refuse_paused(obj, target, "restart")
        annotations = (pod_template(obj).get("metadata") or {}).get("annotations") or {}
        before = {"restartedAt": annotations.get(RESTARTED_AT)}
        if annotations.get(RESTART_RUN_ANNOTATION) == api.ctx.run_id:
            return WritePlan.noop(
                Change(f"{object_ref(target)} was already restarted by this run", before, before),
                f"already restarted by run {api.ctx.run_id} at {annotations.get(RESTARTED_AT)}",
            )
        now = _now_rfc3339()
        template = {
            "metadata": {"annotations": {RESTARTED_AT: now, RESTART_RUN_ANNOTATION: api.ctx.run_id}}
        }

        def observe(written: dict[str, Any]) -> Mapping[str, Any]:
            ann = (pod_template(written).get("metadata") or {}).get("annotations") or {}
            return {"restartedAt": ann.get(RESTARTED_AT)}

        # The preview names no clock time: it is bound into approvals by its hash, and the
        # same restart previewed a second later must not count as a different change.
        change = Change(
            f"restart {object_ref(target)}: set pod template annotation {RESTARTED_AT} "
            "to the time of the restart",
            before=before,
            after={"restartedAt": "(the time of the restart)"},
        )
        record = api.record(obj, change, after={"restartedAt": now})
        return WritePlan(change, lambda: api.patch_template(target, template, record), observe)
