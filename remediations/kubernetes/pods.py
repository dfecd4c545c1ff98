"""``kubernetes.delete_pod``: evict pods so their controller replaces them.

On a Deployment target only the Deployment's own pods qualify: those whose controller is one
of the ReplicaSets the Deployment controls (``KubeApi.controlled_replica_sets``, as kubectl's
``GetAllReplicaSets``), never another Deployment's pods that its selector also matches, nor
bare pods or Job pods. On a StatefulSet or DaemonSet target, the pods whose controller is that
workload: what follows a ``rollout_restart`` of one whose ``updateStrategy`` is ``OnDelete``,
where the new template reaches only the pods created after a delete.

Each pod goes through the Eviction API (``evict``), as ``kubectl drain`` does, so its
PodDisruptionBudget is honoured: a budget that allows no disruption refuses the eviction, and
the step ends there, refused, naming the budget's reason, the pods it evicted and those it did
not; a budget whose status its controller has not caught up with yet is waited for, a few
seconds at most (``evict.BUDGET_PENDING``). Every eviction carries the pod's uid as a
precondition, so it deletes the pod that was looked at and never a namesake that replaced it.
A dry-run eviction does not use up the budget, so the plan reads the budgets and counts them
down pod by pod (``budgets.forecast``): the preview names the pod a budget would refuse (its
after ``{"deleted": [...], "not_deleted": [...]}``), and the dry run, once its dry-run
evictions have passed, ends refused as the live step would. The live step still leaves the
decision to the API server.

A deleted pod cannot carry a record of its deletion, and its replacement may have its name
(StatefulSet pods do): so the step's write record (``replay``) goes on the workload that holds
the pods (the Deployment target, or for a Pod target the Deployment of its ReplicaSet or the
StatefulSet or DaemonSet controlling it: ``pod_holder``), written just before the evictions.
A step taken up again after a crash finds it and evicts the recorded uids again, and only
them, so a take-up never evicts more than the step's ``max_pods``: a crash between the record
and the evictions left them undone, and the uid precondition keeps the replacements safe
(they have other uids). A 404 or a uid conflict then means the pod is already gone. A pod of
a ReplicaSet that no Deployment controls gets no record. The record says every chosen pod
was deleted: an eviction refused (``evict.EvictionRefused``) makes the step correct it to
those that were (``pod_holder.correct_record``), before the refusal ends the step; so does a
last try whose evictions could not reach the API server (``pod_holder.correct_unreached``;
while the step waits for the server, ``ActionContext.retried_if_unreached``, the record stays
for the next try to carry out), and so does a last try that fails in its plan after an earlier
try wrote the record (``pod_holder.correct_unplanned``). Evictions stopped part way by any
other failure (the step's end) correct it to the pods that went (``pod_holder.correct_stopped``).
Taken up again: ``pod_replay``.

A Pod target that no controller would replace is refused (``refuse_unreplaced``): a bare pod
(deleted, it and its work are lost) and a static pod's mirror (its controller is a Node:
deleting the mirror restarts nothing, the kubelet runs the static pod on).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator, model_validator

from remediations import names
from remediations.base import ActionError, ActionRefused, Change, Risk, TransientActionError
from remediations.kubernetes.api import (
    MERGE_PATCH,
    ActionParams,
    KubeAction,
    KubeApi,
    WritePlan,
)
from remediations.kubernetes.api_errors import is_api_exception
from remediations.kubernetes.budgets import Forecast, forecast, read_budgets
from remediations.kubernetes.evict import BUDGET_PENDING, Evicted, EvictionRefused, evict_pods
from remediations.kubernetes.objects import WORKLOADS, controller_uid, object_ref, selector_string
from remediations.kubernetes.pod_holder import (
    correct_record,
    correct_stopped,
    correct_unplanned,
    correct_unreached,
    holder_of,
    own_record,
    recorded_holder,
    refuse_unreplaced,
)
from remediations.kubernetes.pod_replay import replay_plan, stops_for_good, unreached
from remediations.kubernetes.retry import DEFAULT_RETRY, RetryPolicy
from remediations.params import Integer
from remediations.targets import Target

__all__ = ["DeletePod", "DeletePodParams"]


class DeletePodParams(ActionParams):
    """One named ``pod``, or up to ``max_pods`` pods matching ``selector``. On a workload
    target only the pods it controls (a Deployment's through its ReplicaSets) qualify,
    whatever else its selector matches. With neither, a Pod target deletes itself and a
    workload target deletes up to ``max_pods`` of its pods (unready first, then the oldest;
    never one being deleted or one that has ended, ``_live``).
    ``grace_period_seconds``: 1 to 3600, default the pod's own terminationGracePeriodSeconds;
    0 (a force delete) is refused."""

    pod: str | None = None
    selector: str | None = Field(default=None, min_length=1, max_length=1000)
    max_pods: Integer = Field(default=1, ge=1, le=10)
    grace_period_seconds: Integer | None = Field(default=None, ge=0, le=3600)

    @field_validator("pod")
    @classmethod
    def _pod_name(cls, name: str | None) -> str | None:
        if name is not None and not names.is_dns1123_subdomain(name):
            raise ValueError(f"{name!r} is not a pod name (DNS-1123 subdomain)")
        return name

    @field_validator("selector")
    @classmethod
    def _selector(cls, selector: str | None) -> str | None:
        if selector is not None and not names.is_label_selector(selector):
            raise ValueError(f"{selector!r} is not a label selector")
        return selector

    @field_validator("grace_period_seconds")
    @classmethod
    def _graceful(cls, seconds: int | None) -> int | None:
        # A delete (an eviction's too) with gracePeriodSeconds 0 is a force delete: it removes
        # the pod at once, without waiting for its kubelet to stop the containers, and its
        # controller creates the replacement while the old pod may still run (a StatefulSet's
        # under the same name: two pods with one identity). kubectl sends 1 for
        # --grace-period=0 unless --force is given (kubectl delete's RunDelete), and
        # remediator has no force.
        if seconds == 0:
            raise ValueError(
                "0 is a force delete: the API server removes the pod before its containers "
                "have stopped, and its replacement may run beside it; give 1 for the shortest "
                "graceful delete (what kubectl sends for --grace-period=0 without --force), "
                "or leave it out for the pod's own terminationGracePeriodSeconds"
            )
        return seconds

    @model_validator(mode="after")
    def _not_both(self) -> DeletePodParams:
        if self.pod is not None and self.selector is not None:
            raise ValueError("give pod or selector, not both")
        return self


def _live(pod: Mapping[str, Any]) -> bool:
    """Whether deleting ``pod`` can replace it: not being deleted already, and not ended
    (phase ``Succeeded`` or ``Failed``). An ended pod, an evicted one among them, stays in the
    API until it is garbage-collected, but its controller no longer counts it and has
    replaced it already; unready, it would otherwise be picked before the sick pod, deleted
    and reported done while that pod went on running."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _pod_sort_key(pod: Mapping[str, Any]) -> tuple[bool, str, str]:
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    metadata = pod.get("metadata") or {}
    # Unready pods first (they are the likely culprits), then the oldest.
    return (ready, str(metadata.get("creationTimestamp") or ""), str(metadata.get("name")))


class DeletePod(KubeAction[DeletePodParams]):
    """Evict pods so their controller replaces them. Evicting an absent pod is a NOOP."""

    name: ClassVar[str] = "kubernetes.delete_pod"
    Params: ClassVar[type[BaseModel]] = DeletePodParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Pod", *WORKLOADS})

    def __init__(
        self,
        retry: RetryPolicy = DEFAULT_RETRY,
        *,
        conflict_attempts: int = 5,
        budget_pending: RetryPolicy = BUDGET_PENDING,
    ) -> None:
        """``budget_pending``: how long an eviction whose PodDisruptionBudget is still being
        processed is sent again (``evict.BUDGET_PENDING``); the rest as ``KubeAction``."""
        super().__init__(retry, conflict_attempts=conflict_attempts)
        self.budget_pending = budget_pending

    def explain(self, target: Target, params: DeletePodParams) -> str:
        if target.kind == "Pod":
            return f"delete pod {target.namespace}/{params.pod or target.name}"
        which = f"pod {params.pod}" if params.pod else f"up to {params.max_pods} pod(s)"
        extra = f" matching {params.selector}" if params.selector else ""
        return f"delete {which}{extra} of {object_ref(target)}"

    async def _candidates(
        self, api: KubeApi, target: Target, params: DeletePodParams
    ) -> tuple[list[dict[str, Any]], Target | None, dict[str, Any]]:
        """The pods that qualify, and the workload that holds them (its Target and object;
        None and {} when no workload keeps a record: see the module's docstring). A Pod
        target that is gone has none, unless this step recorded its deletion
        (``recorded_holder``: taken up after a crash that came after the eviction)."""
        ns = target.namespace
        if target.kind == "Pod":
            if params.selector is not None:
                raise ActionRefused(
                    "a selector needs a workload target (Deployment, StatefulSet or "
                    "DaemonSet), not a Pod"
                )
            if params.pod is not None and params.pod != target.name:
                raise ActionRefused(
                    f"params.pod {params.pod!r} differs from the target pod {target.name!r}"
                )
            try:
                pod = await api.call(
                    object_ref(target),
                    lambda: api.core.read_namespaced_pod(target.name, ns, **api.read_opts()),
                    allow=(404,),
                )
            except Exception as exc:
                if not is_api_exception(exc):
                    raise
                recorded = await recorded_holder(api, target)
                return ([], *recorded) if recorded else ([], None, {})
            found = api.to_dict(pod)
            refuse_unreplaced(found, target)
            held = await holder_of(api, found, ns)
            return ([found], *held) if held else ([found], None, {})
        workload = await api.read_workload(target)
        selector = selector_string((workload.get("spec") or {}).get("selector") or {})
        if not selector:
            raise ActionRefused(
                f"{object_ref(target)} has an empty selector; refusing to delete pods"
            )
        if params.selector:
            selector = f"{selector},{params.selector}"
        kwargs: dict[str, Any] = {"label_selector": selector, **api.read_opts()}
        if params.pod is not None:
            kwargs["field_selector"] = f"metadata.name={params.pod}"
        listed = await api.call(
            f"pods of {object_ref(target)}", lambda: api.core.list_namespaced_pod(ns, **kwargs)
        )
        # The selector also matches pods the workload does not control (another workload's
        # whose labels are a superset, bare pods, Job pods): the controller chain tells them
        # apart. A Deployment's pods are controlled by its ReplicaSets, a StatefulSet's or a
        # DaemonSet's by the workload itself.
        if target.kind == "Deployment":
            replica_sets = await api.controlled_replica_sets(target, workload)
            owners = {(rs.get("metadata") or {}).get("uid") for rs in replica_sets}
        else:
            owners = {(workload.get("metadata") or {}).get("uid")}
        pods = [p for p in api.to_dict(listed).get("items") or [] if controller_uid(p) in owners]
        return pods, target, workload

    async def plan(self, api: KubeApi, target: Target, params: DeletePodParams) -> WritePlan:
        try:
            candidates, holder, holder_obj = await self._candidates(api, target, params)
        except TransientActionError as exc:
            if exc.may_have_acted or api.ctx.retried_if_unreached or api.ctx.dry_run:
                raise
            # The step's last try: an earlier one's record, its evictions never sent, goes.
            await correct_unplanned(api, target, exc)
        record = api.earlier_write(holder_obj)
        if record is not None and holder is not None:
            stored = own_record(api, (holder_obj.get("metadata") or {}).get("annotations") or {})
            return replay_plan(
                api,
                target.namespace,
                (holder, stored),
                record,
                params.grace_period_seconds,
                self.budget_pending,
            )
        pods = [p for p in candidates if _live(p)]
        pods.sort(key=_pod_sort_key)
        chosen = pods[: params.max_pods]
        names = [p["metadata"]["name"] for p in chosen]
        before = {"pods": names}
        if not chosen:
            # Its after is its before, as every noop's: an approved step whose pod went away
            # meanwhile then runs as a noop instead of asking to approve deleting nothing
            # (pipeline.approve's "changes nothing").
            return WritePlan.noop(
                Change(f"no pod to delete for {object_ref(target)}", before, before),
                f"no (live) pod to delete for {object_ref(target)}",
            )
        ns = target.namespace
        # A dry-run eviction does not use up the budget: what the budgets would let through is
        # counted here (budgets.forecast), for the preview an engineer approves and the dry run.
        told = forecast(chosen, await read_budgets(api, ns))
        change = Change(
            f"delete pod(s) {', '.join(names)} in namespace {ns}{told.summary()}",
            before,
            told.after(),
            preconditions={"uids": [p["metadata"]["uid"] for p in chosen]},
        )

        async def write() -> dict[str, Any]:
            # The record says every pod goes; a refusal corrects it (correct_record).
            record = (
                api.record(holder_obj, change, after={"deleted": names})
                if holder is not None
                else {}
            )
            if holder is not None and record:
                # Before the evictions: a crash after them must leave the record behind. A
                # crash between the two leaves the evictions to the take-up (_replay). On the
                # workload as read (its record slot was chosen from it): a WriteConflict
                # plans the step again before anything is evicted.
                body = {"metadata": {"annotations": {**api.stamp(), **record}}}
                await api.patch_read(holder, holder_obj, body, MERGE_PATCH)
            pods = [(p["metadata"]["name"], p["metadata"]["uid"]) for p in chosen]
            done = Evicted()
            try:
                await evict_pods(
                    api,
                    ns,
                    pods,
                    params.grace_period_seconds,
                    pending=self.budget_pending,
                    progress=done,
                )
            except EvictionRefused as exc:
                if api.ctx.dry_run:
                    # A dry-run eviction evicts nothing: none of them acted.
                    raise _dry_refusal(ns, exc) from exc
                # The record says every pod went: make it say which did (correct_record).
                stored = own_record(api, record) if holder is not None else None
                if holder is None or stored is None:
                    raise
                await correct_record(api, holder, stored, exc)
            except ActionError as exc:
                # No eviction reached the API server: while the step waits for it the record
                # stays, for the next try to carry out (_replay); its last try says none went.
                # Any other failure ends the step: the record says what went before it.
                stored = own_record(api, record) if holder is not None else None
                if stored is None or api.ctx.dry_run or not stops_for_good(api, exc):
                    raise
                assert holder is not None
                if unreached(exc):
                    await correct_unreached(api, holder, stored, exc, names)
                await correct_stopped(api, holder, stored, exc, done, names)
            if api.ctx.dry_run and told.refused:
                # Every dry-run eviction passed (validated), but live, the budget would stop
                # the step at told.refused[0]: the dry run ends as the live step would.
                raise told.refusal(ns)
            return {"deleted": done.now}

        return WritePlan(change, write, _identity)


def _identity(written: dict[str, Any]) -> Mapping[str, Any]:
    return written


def _dry_refusal(ns: str, refused: EvictionRefused) -> ActionRefused:
    """The refusal a dry run ends with when the API server refused one of its dry-run
    evictions: said as what would happen, as not having acted."""
    if refused.advice:
        return Forecast.met(refused).refusal(ns)
    return ActionRefused(f"dry run, nothing evicted: {refused.message}")
