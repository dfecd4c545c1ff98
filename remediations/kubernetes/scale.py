"""``kubernetes.scale``: set a workload's replicas, never past [min, max], and never the other
way from the one asked: a raise (``delta: +N``, ``factor`` above 1, ``replicas`` above the live
count) never lowers the count, however far above ``max`` it already is, and a lowering never
raises it (``ScaleParams.toward``). A bound is a limit on the step's own change, not an order
to move the workload to it: the same rule as ``kubernetes.set_resources``' factor with a cap.

``restore: true`` (an on_resolved step) undoes the change of its own run's scale step, and only
that: it takes this run's delta (after - before) off the live count, whatever the restore
step's own ``max`` (``_undone``: only its ``min`` is a floor, and an undo held there says so),
so two runs that scaled the same target restore in either order and the target ends where it
was before the first, while the capacity a still-open run added stays. It only acts when the
live count is the one remediator last wrote (``remediator.io/replicas``, stamped with every
scale write): a count someone else changed since is left alone, and the step is refused naming
both counts, also when a later run's scale wrote over that change (``scale_drift``). So is a
workload deleted and recreated since the run scaled it (another uid than the one in the run's
write record): the run's delta is not its to undo. And so is one that no longer carries the
run's write record: only that record dates the stamp. ``kubectl rollout undo`` gives a
Deployment the annotations its controller copied onto the older ReplicaSet, an older stamp
among them and this run's record missing, and a live count equal to that older stamp (set back
by hand, or by this run's own restore whose record the undo dropped) is no sign that nothing
changed since (``_refuse_changed_since``).

A retry never scales twice: the replicas, the stamp and the step's write record (``replay``:
the count it scaled from and to) go in one request, so a step taken up again after a crash
finds its own record and reports that change instead of adding its delta again. A restore
happens at most once per run: one that finds a restore of its run on the object does nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, Field, model_validator

from remediations.base import ActionRefused, Change, Risk
from remediations.kubernetes.api import (
    RUN_ID_ANNOTATION,
    ActionParams,
    KubeAction,
    KubeApi,
    WritePlan,
)
from remediations.kubernetes.objects import object_ref
from remediations.kubernetes.replay import MAX_RECORDS, WriteRecord, records_of
from remediations.kubernetes.scale_drift import REPLICAS_ANNOTATION, changed_since, marks
from remediations.kubernetes.scale_write import write_count
from remediations.params import Boolean, Integer, Number
from remediations.targets import Target

__all__ = ["REPLICAS_ANNOTATION", "Scale", "ScaleParams"]


class ScaleParams(ActionParams):
    """Exactly one of ``replicas``, ``delta``, ``factor``, or ``restore``; clamped to [min, max]
    (a restore only by its ``min``: ``_undone``).
    A lowering by ``factor`` or ``delta`` needs ``min`` given: the default 0 let ``factor: 0.5``
    take 1 replica to 0, an outage nobody wrote (``replicas: 0`` names zero itself)."""

    replicas: Integer | None = Field(default=None, ge=0, le=1000)
    delta: Integer | None = Field(default=None, ge=-1000, le=1000)
    factor: Number | None = Field(default=None, gt=0, le=10)
    restore: Boolean = False
    min: Integer = Field(default=0, ge=0, le=1000)
    max: Integer = Field(ge=0, le=1000)

    @model_validator(mode="after")
    def _one_mode(self) -> ScaleParams:
        given = [n for n in ("replicas", "delta", "factor") if getattr(self, n) is not None]
        if self.restore and given:
            raise ValueError(f"restore takes no {', '.join(given)}")
        if not self.restore and len(given) != 1:
            raise ValueError("give exactly one of replicas, delta, factor (or restore: true)")
        if self.delta == 0:
            raise ValueError("delta must not be 0")
        if self.factor == 1:
            raise ValueError("factor must not be 1: it would change nothing")
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        lowering = f"factor {self.factor}" if self.factor is not None and self.factor < 1 else ""
        if self.delta is not None and self.delta < 0:
            lowering = f"delta {self.delta}"
        if lowering and "min" not in self.model_fields_set:
            raise ValueError(
                f"a lowering ({lowering}) needs min: min: 1 keeps at least one pod, min: 0 "
                "lets it scale the workload to zero replicas (an outage)"
            )
        return self

    def desired(self, current: int) -> int:
        """The count to set from ``current``: the one asked, within [min, max], never moved the
        other way (``toward``). ValueError for ``restore``, which depends on what the run
        changed (``Scale.plan``)."""
        return self.toward(current, self.wanted(current))

    def wanted(self, current: int) -> int:
        """The count asked from ``current``, before the bounds. ValueError for ``restore``.

        ``factor``: ``current * factor`` in exact decimal arithmetic, rounded up for a raise
        and down for a lowering (away from ``current``); a raise from 0 asks for ``min``."""
        if self.restore:
            raise ValueError("a restore undoes its run's own change; it has no count of its own")
        if self.replicas is not None:
            wanted = self.replicas
        elif self.delta is not None:
            wanted = current + self.delta
        else:
            assert self.factor is not None
            # In decimal, as the rule wrote it (quantity.scale does the same): in binary
            # floating point 50 x 1.1 is 55.00000000000001 and ceil made it 56.
            raw = Decimal(current) * Decimal(str(self.factor))
            # Round away from the current count, so a factor moves by at least one replica...
            wanted = math.ceil(raw) if self.factor > 1 else math.floor(raw)
            if self.factor > 1 and current == 0:
                # ... except from 0, where any factor gives 0. A raise from nothing asks for the
                # rule's floor (min: 1 gives the consumers of a backlog their first pod); with
                # min 0 it stays 0, as the multiplication says.
                wanted = self.min
        return wanted

    def toward(self, current: int, wanted: int) -> int:
        """From ``current`` toward ``wanted``, stopping at ``min`` or ``max``, and never past
        ``current`` the other way: ``current`` itself when the bound is already behind it (a
        raise of a count at or above ``max``, a lowering of one at or below ``min``). Clamping
        alone turned "add two" on a workload above ``max`` into removing its extra replicas."""
        bounded = max(self.min, min(self.max, wanted))
        if wanted > current:
            return max(current, bounded)
        if wanted < current:
            return min(current, bounded)
        return current

    def held(self, current: int, wanted: int) -> str:
        """Why ``toward`` left ``current`` as it is although ``wanted`` differs (for the step's
        message); "" when it did not."""
        if wanted > current >= self.max:
            return f"already at or above max {self.max}: a raise never lowers it"
        if wanted < current <= self.min:
            return f"already at or below min {self.min}: a lowering never raises it"
        return ""


_SCALE_INFIX = {"Deployment": "deployment", "StatefulSet": "stateful_set"}


class Scale(KubeAction[ScaleParams]):
    """Set ``spec.replicas`` of the workload by a merge patch that carries the resourceVersion
    it read (a concurrent change fails it with 409, as kubectl's PUT of the Scale would) and,
    in the same request, the run id, the count written and the step's write record. Not the
    ``/scale`` subresource: it carries no annotations, and a stamp sent after it could be
    lost in a crash, leaving a retried step unable to tell it had scaled. On a 409 it re-reads
    and resends, the record's slot chosen again from what it read (``replay``). Needs ``patch`` on
    the workload and ``list`` on autoscaling ``horizontalpodautoscalers`` to refuse
    HPA-managed targets (fails closed).
    """

    name: ClassVar[str] = "kubernetes.scale"
    Params: ClassVar[type[BaseModel]] = ScaleParams
    risk: ClassVar[Risk] = Risk.LOW
    disruptive: ClassVar[bool] = False
    target_kinds: ClassVar[frozenset[str]] = frozenset(_SCALE_INFIX)

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
        obj = await api.read_workload(target)
        replayed = api.replayed(obj)
        if replayed is not None:
            return replayed
        if not params.restore:
            await self._refuse_autoscaled(api, target)
        current = int((obj.get("spec") or {}).get("replicas") or 0)
        before = {"replicas": current}
        how = ""
        if params.restore:
            delta = _own_delta(api.ctx.recorded.get(self.name))
            if delta == 0:
                message = (
                    f"this run did not change the replicas of {object_ref(target)}: nothing to undo"
                )
                return WritePlan.noop(Change(message, before, before), message)
            done = _restored_by(obj, api.ctx.run_id)
            if done:
                message = (
                    f"this run's {delta:+d} on {object_ref(target)} was already undone by its "
                    f"{done}; a restore happens once per run"
                )
                return WritePlan.noop(Change(message, before, before), message)
            # Only a restore with something to undo meets an HPA: one without is a noop.
            await self._refuse_autoscaled(api, target)
            self._refuse_changed_since(api, obj, target, current, delta)
            wanted = current - delta
            desired = _undone(params, current, wanted)
            how = f" (undoing this run's {delta:+d}" + (
                f" only down to min {params.min}, not to {wanted})" if desired != wanted else ")"
            )
        else:
            wanted = params.wanted(current)
            desired = params.toward(current, wanted)
        after = {"replicas": desired}
        if desired == current:
            held = params.held(current, wanted)
            message = f"{object_ref(target)} " + (
                f"has {current} replicas, {held} (asked: {wanted})"
                if held
                else f"already has {current} replicas"
            )
            return WritePlan.noop(Change(message, before, before), message)
        change = Change(
            f"scale {object_ref(target)} from {current} to {desired} replicas{how}",
            before,
            after,
            preconditions={"replicas": current},
        )
        # The object's uid: a restore tells the object this run scaled from one that was
        # deleted and recreated since (with annotations copied from its manifest).
        extra = {"uid": _uid(obj), **({"restore": True} if params.restore else {})}

        def body(read: dict[str, Any]) -> dict[str, Any]:
            # Who scaled it, the count written (what a later restore checks the live count
            # against) and this step's record, atomically with the count itself. The
            # resourceVersion of ``read``: a concurrent change makes the patch fail with 409
            # instead of silently overwriting what someone else decided, or the record slot
            # (chosen from ``read``) another run's record went into since.
            annotations = {
                **api.stamp(),
                REPLICAS_ANNOTATION: str(desired),
                # Before the record: the time it says someone else changed the count is
                # before this run's record (``scale_drift``: this run's restore still acts).
                **marks(read, current),
                **api.record(read, change, extra=extra),
            }
            version = (read.get("metadata") or {}).get("resourceVersion")
            return {
                "metadata": {"resourceVersion": version, "annotations": annotations},
                "spec": {"replicas": desired},
            }

        async def write() -> dict[str, Any]:
            return await write_count(
                api, target, body, obj, current, desired, attempts=self.conflict_attempts
            )

        return WritePlan(
            change,
            write,
            lambda written: {"replicas": (written.get("spec") or {}).get("replicas")},
        )

    def _refuse_changed_since(
        self, api: KubeApi, workload: dict[str, Any], target: Target, current: int, delta: int
    ) -> None:
        """Refuse a restore (ActionRefused) unless ``workload`` is the object this run scaled
        and its live count is the one remediator last wrote.

        This run's scale write record must be on the object and name the live uid. It is what
        dates the count stamped with remediator's last write (``remediator.io/replicas``):
        annotations only ever come back as a set. The Deployment controller copies the
        Deployment's annotations onto its current ReplicaSet, never removing one
        (``copyDeploymentAnnotationsToReplicaSet`` in kubernetes'
        ``pkg/controller/deployment/util/deployment_util.go``), and ``kubectl rollout undo``
        gives the Deployment the target ReplicaSet's annotations (``SetDeploymentAnnotationsTo``
        there, ``rollback.go`` in kubectl): the count of an older write comes back with the
        records of that time. Only when this run's record came with it is that count from
        this run's write or a later one; without it the count may predate this run's change,
        and a live count equal to it (put back by hand, or by this run's own restore, whose
        record the undo dropped) is no sign that nothing changed since. So no record refuses,
        whatever the stamp says: a Deployment recreated since (its annotations copied from a
        manifest or not), annotations replaced by an undo or by hand, or the record's slot
        taken by newer writes (``replay.needs``: evicted last, while its restore has not run).
        With the record but no stamp (removed by hand), the count this run set is the
        reference."""
        annotations = (workload.get("metadata") or {}).get("annotations") or {}
        uid = _uid(workload)
        own = _scaled_by(workload, api.ctx.run_id)
        if own is None:
            if REPLICAS_ANNOTATION not in annotations:
                raise ActionRefused(
                    f"{object_ref(target)} carries neither {REPLICAS_ANNOTATION} nor this run's "
                    f"write record: not the object this run scaled as far as it shows (deleted "
                    f"and recreated, or its annotations removed, since), so it is left alone "
                    f"(this run's change was {delta:+d})"
                )
            raise ActionRefused(
                f"{object_ref(target)} carries no write record of this run's scale, so its "
                f"{REPLICAS_ANNOTATION} ({annotations[REPLICAS_ANNOTATION]}) may be older than "
                f"this run's change: its annotations were replaced since (kubectl rollout undo "
                f"copies an older ReplicaSet's, remediator's included), it was deleted and "
                f"recreated, or newer writes took its slot ({MAX_RECORDS} slots, more open "
                f"scale runs than they hold). It is left alone "
                f"(this run's change was {delta:+d}); undo it by hand if it should be"
            )
        if own.extra.get("uid") not in (None, uid):
            raise ActionRefused(
                f"{object_ref(target)} is not the object this run scaled (uid {uid}, not "
                f"{own.extra.get('uid')}): deleted and recreated since, so it is left alone "
                f"(this run's change was {delta:+d})"
            )
        changed = changed_since(workload, own.at)
        if changed:
            raise ActionRefused(
                f"{object_ref(target)} had its replica count changed by someone else after "
                f"this run's scale (a later scale by remediator found it changed at {changed}), "
                f"so it is left alone (this run's change was {delta:+d})"
            )
        try:
            expected = int(annotations[REPLICAS_ANNOTATION])
            by = f"remediator last set (run {annotations.get(RUN_ID_ANNOTATION, 'unknown')})"
        except (KeyError, ValueError):
            # The stamp was removed by hand, the record of this run's write is still there.
            expected, by = int(api.ctx.recorded[self.name]["after"]["replicas"]), "this run set"
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


def _undone(params: ScaleParams, current: int, wanted: int) -> int:
    """The count a restore sets from ``current``, its run's change undone to ``wanted``:
    exactly that, whatever the step's ``max``, which every scale step must give and which
    bounds no undo (clamped by it, a restore stopped short: a max of 10 gave a run's 12 -> 6
    back only to 10, its message saying the -6 was undone, two pods missing; or went past:
    a max below it took 27 replicas to 10). A lowering stops at the step's ``min``, a floor
    given on purpose (``min: 1`` keeps a pod where another run lowered the count meanwhile;
    the step's message says so), and never raises the count."""
    if wanted > current:
        return wanted
    return min(current, max(params.min, wanted))


def _own_delta(recorded: Any) -> int:
    """What this run's own scale step changed (after - before); 0 when the run has no scale
    step that changed something (none in the run, a noop, a dry run, a failure)."""
    try:
        return int(recorded["after"]["replicas"]) - int(recorded["before"]["replicas"])
    except (KeyError, TypeError, ValueError):
        return 0


def _uid(workload: Mapping[str, Any]) -> str:
    return str((workload.get("metadata") or {}).get("uid") or "")


def _scaled_by(workload: dict[str, Any], run_id: str) -> WriteRecord | None:
    """The newest record of a scale (not a restore) by run ``run_id`` on ``workload``; None
    when there is none."""
    own = [
        r
        for r in records_of(workload).values()
        if r.run_id == run_id and r.action == Scale.name and not r.extra.get("restore")
    ]
    return max(own, key=lambda r: r.at) if own else None


def _restored_by(workload: dict[str, Any], run_id: str) -> str:
    """Which step of run ``run_id`` already restored ``workload`` (e.g. "resolve step 0"), per
    the write records on it; "" when none did."""
    for record in records_of(workload).values():
        if record.run_id == run_id and record.action == Scale.name and record.extra.get("restore"):
            return f"{record.phase} step {record.step}"
    return ""
