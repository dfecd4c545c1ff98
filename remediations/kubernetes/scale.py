"""``kubernetes.scale``: set replicas through the ``/scale`` subresource, never past [min, max].

``restore: true`` (an on_resolved step) undoes the change of its own run's scale step, and only
that: it takes this run's delta (after - before) off the live count, so two runs that scaled the
same target restore in either order and the target ends where it was before the first, while
the capacity a still-open run added stays. It only acts when the live count is the one
remediator last wrote (``remediator.io/replicas``, stamped with every scale write): a count
someone else changed since is left alone, and the step is refused naming both counts.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, ClassVar

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, Field, model_validator

from remediations.base import ActionError, ActionRefused, Change, Risk
from remediations.kubernetes.api import (
    JSON,
    MERGE_PATCH,
    RUN_ID_ANNOTATION,
    ActionParams,
    KubeAction,
    KubeApi,
    WritePlan,
)
from remediations.kubernetes.objects import object_ref
from remediations.kubernetes.retry import DEFAULT_RETRY, RetryPolicy
from remediations.targets import Target

__all__ = ["REPLICAS_ANNOTATION", "Scale", "ScaleParams"]

# The replica count remediator last wrote, stamped beside the run id with every scale write.
REPLICAS_ANNOTATION = "remediator.io/replicas"


class ScaleParams(ActionParams):
    """Exactly one of ``replicas``, ``delta``, ``factor``, or ``restore``; clamped to [min, max]."""

    replicas: int | None = Field(default=None, ge=0, le=1000)
    delta: int | None = Field(default=None, ge=-1000, le=1000)
    factor: float | None = Field(default=None, gt=0, le=10)
    restore: bool = False
    min: int = Field(default=0, ge=0, le=1000)
    max: int = Field(ge=0, le=1000)

    @model_validator(mode="after")
    def _one_mode(self) -> ScaleParams:
        given = [n for n in ("replicas", "delta", "factor") if getattr(self, n) is not None]
        if self.restore and given:
            raise ValueError(f"restore takes no {', '.join(given)}")
        if not self.restore and len(given) != 1:
            raise ValueError("give exactly one of replicas, delta, factor (or restore: true)")
        if self.delta == 0:
            raise ValueError("delta must not be 0")
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def desired(self, current: int) -> int:
        """The count to set from ``current``, clamped to [min, max]. ValueError for ``restore``,
        which depends on what the run changed (``Scale.plan``)."""
        if self.restore:
            raise ValueError("a restore undoes its run's own change; it has no count of its own")
        if self.replicas is not None:
            wanted = self.replicas
        elif self.delta is not None:
            wanted = current + self.delta
        else:
            assert self.factor is not None
            # Round away from the current count, so a factor always moves by at least one.
            raw = current * self.factor
            wanted = math.ceil(raw) if self.factor >= 1 else math.floor(raw)
        return self.clamp(wanted)

    def clamp(self, wanted: int) -> int:
        """``wanted`` within [min, max]."""
        return max(self.min, min(self.max, wanted))


_SCALE_INFIX = {"Deployment": "deployment", "StatefulSet": "stateful_set"}


class Scale(KubeAction[ScaleParams]):
    """Set replicas through the ``/scale`` subresource, with the read resourceVersion.

    The subresource carries no annotations, so the workload is stamped with the run id by a
    second, metadata-only merge patch once the replicas are written (the ``remediator`` field
    manager in managedFields marks the scale write itself). Needs ``list`` on autoscaling
    ``horizontalpodautoscalers`` to refuse HPA-managed targets (fails closed).
    """

    name: ClassVar[str] = "kubernetes.scale"
    Params: ClassVar[type[BaseModel]] = ScaleParams
    risk: ClassVar[Risk] = Risk.LOW
    disruptive: ClassVar[bool] = False
    target_kinds: ClassVar[frozenset[str]] = frozenset(_SCALE_INFIX)

    def __init__(self, retry: RetryPolicy = DEFAULT_RETRY, *, conflict_attempts: int = 5) -> None:
        super().__init__(retry)
        self.conflict_attempts = conflict_attempts

    def explain(self, target: Target, params: ScaleParams) -> str:
        if params.restore:
            how = "back by the replicas this run added or removed"
        elif params.replicas is not None:
            how = f"to {params.replicas} replicas"
        elif params.delta is not None:
            how = f"by {params.delta:+d} replicas"
        else:
            how = f"by a factor of {params.factor}"
        return f"scale {object_ref(target)} {how}, within [{params.min}, {params.max}]"

    async def plan(self, api: KubeApi, target: Target, params: ScaleParams) -> WritePlan:
        infix = _SCALE_INFIX[target.kind]
        read = getattr(api.apps, f"read_namespaced_{infix}_scale")
        replace = getattr(api.apps, f"replace_namespaced_{infix}_scale")
        scale = api.to_dict(
            await api.call(
                object_ref(target), lambda: read(target.name, target.namespace, **api.read_opts())
            )
        )
        await self._refuse_autoscaled(api, target)
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        before = {"replicas": current}
        how = ""
        if params.restore:
            delta = _own_delta(api.ctx.recorded.get(self.name))
            if delta == 0:
                message = (
                    f"this run did not change the replicas of {object_ref(target)}: nothing to undo"
                )
                return WritePlan.noop(Change(message, before, before), message)
            await self._refuse_changed_since(api, target, current, delta)
            desired = params.clamp(current - delta)
            how = f" (undoing this run's {delta:+d})"
        else:
            desired = params.desired(current)
        after = {"replicas": desired}
        if desired == current:
            return WritePlan.noop(
                Change(f"{object_ref(target)} already has {current} replicas", before, before),
                f"{object_ref(target)} already has {current} replicas",
            )
        # PUT with the resourceVersion just read: a concurrent change makes it fail with 409
        # instead of silently overwriting what someone else decided.
        resource_version = (scale.get("metadata") or {}).get("resourceVersion")
        body: dict[str, Any] = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": target.name,
                "namespace": target.namespace,
                "resourceVersion": resource_version,
            },
            "spec": {"replicas": desired},
        }

        async def write() -> dict[str, Any]:
            written = await write_replicas()
            # Who scaled it, for whoever looks at the object. The replicas are written at this
            # point: a stamp that fails even after its retries must not turn the step into a
            # failure, since the run's own record says what was done.
            # A missing or stale count only makes a later restore refuse (fail closed).
            stamp = {**api.stamp(), REPLICAS_ANNOTATION: str(desired)}
            with contextlib.suppress(ActionError):
                await api.patch_workload(target, {"metadata": {"annotations": stamp}}, MERGE_PATCH)
            return written

        async def write_replicas() -> dict[str, Any]:
            # The Scale's resourceVersion is the Deployment's, which the controller bumps with
            # every status write: a 409 is usually that, not a rival scaler. Re-read; resend
            # only while the replica count is still the one the plan started from.
            for _ in range(self.conflict_attempts):
                try:
                    obj = await api.call(
                        object_ref(target),
                        lambda: replace(
                            target.name, target.namespace, body, **api.write_opts(JSON)
                        ),
                        allow=(409,),
                    )
                    return api.to_dict(obj)
                except ApiException:
                    fresh = api.to_dict(
                        await api.call(
                            object_ref(target),
                            lambda: read(target.name, target.namespace, **api.read_opts()),
                        )
                    )
                    now = int((fresh.get("spec") or {}).get("replicas") or 0)
                    if now == desired and not api.ctx.dry_run:
                        return fresh  # an earlier attempt landed but its answer was lost
                    if now != current:
                        raise ActionRefused(
                            f"replicas of {object_ref(target)} changed concurrently from {current} "
                            f"to {now}; not scaling"
                        ) from None
                    body["metadata"]["resourceVersion"] = (fresh.get("metadata") or {}).get(
                        "resourceVersion"
                    )
            raise ActionRefused(
                f"{object_ref(target)} kept changing ({self.conflict_attempts} conflicts); "
                "not scaling"
            )

        return WritePlan(
            Change(
                f"scale {object_ref(target)} from {current} to {desired} replicas{how}",
                before,
                after,
                preconditions={"replicas": current},
            ),
            write,
            lambda written: {"replicas": (written.get("spec") or {}).get("replicas")},
        )

    async def _refuse_changed_since(
        self, api: KubeApi, target: Target, current: int, delta: int
    ) -> None:
        """Refuse a restore when the live count is not the one remediator last wrote."""
        workload = await api.read_workload(target)
        annotations = (workload.get("metadata") or {}).get("annotations") or {}
        own_after = int(api.ctx.recorded[self.name]["after"]["replicas"])
        try:
            expected = int(annotations[REPLICAS_ANNOTATION])
            by = f"remediator last set (run {annotations.get(RUN_ID_ANNOTATION, 'unknown')})"
        except (KeyError, ValueError):
            # Written before the count was stamped: only this run's own write is known.
            expected, by = own_after, "this run set"
        if current != expected:
            raise ActionRefused(
                f"{object_ref(target)} has {current} replicas, not the {expected} {by}: "
                f"changed by someone else since, so it is left alone (this run's change was "
                f"{delta:+d})"
            )

    async def _refuse_autoscaled(self, api: KubeApi, target: Target) -> None:
        hpas = await api.call(
            f"HorizontalPodAutoscalers in namespace {target.namespace}",
            lambda: api.autoscaling.list_namespaced_horizontal_pod_autoscaler(
                target.namespace, **api.read_opts()
            ),
        )
        for hpa in api.to_dict(hpas).get("items") or []:
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            group = str(ref.get("apiVersion") or "").partition("/")[0]
            same = ref.get("kind") == target.kind and ref.get("name") == target.name
            if same and group in ("apps", ""):
                hpa_name = (hpa.get("metadata") or {}).get("name")
                raise ActionRefused(
                    f"{object_ref(target)} is managed by HorizontalPodAutoscaler "
                    f"{target.namespace}/{hpa_name}; change the HPA's minReplicas/maxReplicas "
                    "instead"
                )


def _own_delta(recorded: Any) -> int:
    """What this run's own scale step changed (after - before); 0 when the run has no scale
    step that changed something (none in the run, a noop, a dry run, a failure)."""
    try:
        return int(recorded["after"]["replicas"]) - int(recorded["before"]["replicas"])
    except (KeyError, TypeError, ValueError):
        return 0
