"""The plumbing every Kubernetes action shares: the API view, the write plan, the action base.

Every action reads live state in ``plan()`` and returns the exact change; ``preview()`` shows
it, ``run()`` recomputes the same plan and writes it. Writes carry ``fieldManager=remediator``,
an explicit patch Content-Type (kubernetes_asyncio otherwise guesses one from the body's Python
type), server-side ``dryRun=All`` in dry-run mode, and the run id as an annotation in the same
request. The mechanics mirror kubectl (see research/alertmanager-protocol.md §7).

Each write also carries the step's write record (``replay``): a step of a run taken up again
after a crash between its write and the database recording it finds its own record on the
object, does not write again, and reports what the earlier write did (``WritePlan.replayed``).
Only that step's own record counts: another step of the same run (on another container, or in
``on_failed`` after the same action ran) is its own change and is made.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from kubernetes_asyncio import client as k8s
from pydantic import BaseModel, ConfigDict

from remediations.base import (
    ActionContext,
    ActionError,
    ActionRefused,
    Change,
    Outcome,
    ParamsError,
    Result,
    Risk,
)
from remediations.kubernetes.objects import (
    WORKLOADS,
    is_controlled_by,
    object_ref,
    selector_string,
)
from remediations.kubernetes.replay import (
    WriteRecord,
    find_record,
    now_rfc3339,
    record_annotations,
    record_key,
)
from remediations.kubernetes.retry import DEFAULT_RETRY, RetryPolicy, call
from remediations.targets import Target

__all__ = [
    "ACTION_ANNOTATION",
    "FIELD_MANAGER",
    "JSON",
    "JSON_PATCH",
    "MERGE_PATCH",
    "RUN_ID_ANNOTATION",
    "STRATEGIC_MERGE",
    "ActionParams",
    "KubeAction",
    "KubeApi",
    "WritePlan",
]

FIELD_MANAGER = "remediator"
RUN_ID_ANNOTATION = "remediator.io/run-id"
ACTION_ANNOTATION = "remediator.io/action"

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
JSON = "application/json"

P = TypeVar("P", bound=BaseModel)


class ActionParams(BaseModel):
    """Base of every Kubernetes action's params model: unknown fields are errors (a typo in a
    rule must not be ignored), and params are immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KubeApi:
    """One action call's view of the cluster: the client, the retry policy, the write options.

    Built per call from ``ctx``; raises MissingClient (an ActionRefused) when the service has
    no Kubernetes client. ``apps``, ``core`` and ``autoscaling`` are the typed API groups;
    every request goes through ``call()``, so it is retried and its errors mapped as
    ``retry.call`` describes.
    """

    def __init__(self, ctx: ActionContext, policy: RetryPolicy, action: str) -> None:
        self.client: Any = ctx.clients.get("kubernetes")
        self.apps: Any = k8s.AppsV1Api(self.client)
        self.core: Any = k8s.CoreV1Api(self.client)
        self.autoscaling: Any = k8s.AutoscalingV2Api(self.client)
        self.policy = policy
        self.ctx = ctx
        self.action = action
        # The annotation of this step's write record; None outside a run's steps.
        self.record_key = record_key(ctx.run_id, ctx.phase, ctx.step)

    async def call(
        self, what: str, fn: Callable[[], Awaitable[Any]], *, allow: tuple[int, ...] = ()
    ) -> Any:
        """``fn()`` under this call's retry policy; see ``retry.call`` for ``what``/``allow``."""
        return await call(self.policy, what, fn, allow=allow)

    def to_dict(self, obj: Any) -> dict[str, Any]:
        """A client model object as the API server's JSON (camelCase keys), as a dict."""
        data: dict[str, Any] = self.client.sanitize_for_serialization(obj)
        return data

    def read_opts(self) -> dict[str, Any]:
        """Keyword options for a read: the per-request timeout."""
        return {"_request_timeout": self.policy.request_timeout}

    def write_opts(self, content_type: str) -> dict[str, Any]:
        """Keyword options for a write: field manager, explicit Content-Type, timeout, and
        server-side ``dryRun=All`` when the run is a dry run."""
        # The stubs of kubernetes_asyncio omit _content_type, hence a plain dict of options.
        opts: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "_content_type": content_type,
            "_request_timeout": self.policy.request_timeout,
        }
        if self.ctx.dry_run:
            opts["dry_run"] = "All"
        return opts

    def stamp(self) -> dict[str, str]:
        """Annotations that mark an object as written by this run and action."""
        return {RUN_ID_ANNOTATION: self.ctx.run_id, ACTION_ANNOTATION: self.action}

    def earlier_write(self, obj: Mapping[str, Any]) -> WriteRecord | None:
        """This step's own earlier write of ``obj`` (same run, phase, step and action), as
        recorded on it by ``record()``; None when this step has not written it."""
        return find_record(obj, self.record_key, self.action)

    def record(
        self,
        obj: Mapping[str, Any],
        change: Change,
        *,
        after: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, str | None]:
        """Annotations to send with the write that carries out ``change`` on ``obj``: this
        step's write record (``after``: what the Result will report, default
        ``change.after``; ``extra``: facts the action needs on a replay), and None for old
        records to remove. Empty outside a run's steps and in a dry run (nothing is kept)."""
        if self.record_key is None or self.ctx.dry_run:
            return {}
        record = WriteRecord(
            action=self.action,
            change={
                "summary": change.summary,
                "before": dict(change.before),
                "after": dict(change.after),
                "preconditions": dict(change.preconditions),
            },
            after=dict(change.after if after is None else after),
            run_id=self.ctx.run_id,
            phase=self.ctx.phase,
            step=self.ctx.step,
            extra=dict(extra or {}),
            at=now_rfc3339(),
        )
        return record_annotations(obj, self.record_key, record)

    def replayed(self, obj: Mapping[str, Any]) -> WritePlan | None:
        """The plan of a step that already wrote ``obj`` (``earlier_write``): no write, the
        earlier change reported; None when this step has not written ``obj`` yet."""
        record = self.earlier_write(obj)
        return WritePlan.replayed(record) if record is not None else None

    async def read_workload(self, target: Target) -> dict[str, Any]:
        """GET the Deployment, StatefulSet or DaemonSet ``target``, as a dict."""
        infix = WORKLOADS[target.kind]
        method = getattr(self.apps, f"read_namespaced_{infix}")
        obj = await self.call(
            object_ref(target), lambda: method(target.name, target.namespace, **self.read_opts())
        )
        return self.to_dict(obj)

    async def controlled_replica_sets(
        self, target: Target, deployment: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """The ReplicaSets the Deployment ``target`` (read as ``deployment``) controls, as
        dicts in list order: those its selector matches whose controller is it, as kubectl's
        ``deploymentutil.GetAllReplicaSets`` keeps them (``pkg/util/deployment/deployment.go``,
        ``metav1.IsControlledBy``). A selector also matches other Deployments' ReplicaSets
        (``app=web`` those of ``app=web,track=canary``); the controller's uid tells them apart."""
        selector = selector_string((deployment.get("spec") or {}).get("selector") or {})
        listed = await self.call(
            f"ReplicaSets of {object_ref(target)}",
            lambda: self.apps.list_namespaced_replica_set(
                target.namespace, label_selector=selector, **self.read_opts()
            ),
        )
        items: list[dict[str, Any]] = self.to_dict(listed).get("items") or []
        return [rs for rs in items if is_controlled_by(rs, deployment)]

    async def patch_workload(
        self, target: Target, body: Any, content_type: str, *, allow: tuple[int, ...] = ()
    ) -> dict[str, Any]:
        """PATCH the workload ``target`` with ``body`` sent as ``content_type``; the object the
        API server returns (after the write, or as it would be in a dry run), as a dict.
        ``allow``: statuses raised as the ApiException itself (``retry.call``)."""
        infix = WORKLOADS[target.kind]
        method = getattr(self.apps, f"patch_namespaced_{infix}")
        obj = await self.call(
            object_ref(target),
            lambda: method(target.name, target.namespace, body, **self.write_opts(content_type)),
            allow=allow,
        )
        return self.to_dict(obj)

    async def patch_template(
        self,
        target: Target,
        template: Mapping[str, Any],
        record: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """Change the pod template of the workload ``target``: ``template`` (a partial
        ``spec.template``) as a strategic merge patch, with this run's ``stamp()`` and the
        step's write ``record`` (``record()``) on the object, in the same request. A new
        rollout follows. Returns as ``patch_workload``."""
        annotations = {**self.stamp(), **(record or {})}
        body = {"metadata": {"annotations": annotations}, "spec": {"template": template}}
        return await self.patch_workload(target, body, STRATEGIC_MERGE)


def _same(live: Mapping[str, Any], approved: Mapping[str, Any]) -> bool:
    # Compared as JSON: the approved side has been through the store's jsonb.
    return json.dumps(dict(live), sort_keys=True, default=str) == json.dumps(
        dict(approved), sort_keys=True, default=str
    )


@dataclass(frozen=True, slots=True)
class WritePlan:
    """What ``run()`` does, computed from live state by ``KubeAction.plan()``.

    ``change`` is what ``preview()`` returns. ``write`` sends the change and returns the
    object as written (None when live state already matches: a NOOP for ``noop_reason``).
    ``observe`` picks, from what ``write`` returned, the fields ``Result.after`` reports.
    ``applied``: set when this step already made the change (``replayed``): what its Result
    reported as after. ``report``: the Result's message from what ``write`` returned, for a
    write whose outcome the summary does not tell (default: ``change.summary``).
    """

    change: Change
    write: Callable[[], Awaitable[dict[str, Any]]] | None
    observe: Callable[[dict[str, Any]], Mapping[str, Any]]
    noop_reason: str = ""
    applied: Mapping[str, Any] | None = None
    report: Callable[[dict[str, Any]], str] | None = None

    @classmethod
    def noop(cls, change: Change, reason: str) -> WritePlan:
        """Live state already matches: nothing is written, so nothing is observed either."""
        return cls(change, None, lambda _written: change.before, noop_reason=reason)

    @classmethod
    def replayed(cls, record: WriteRecord) -> WritePlan:
        """This step wrote already (before a restart): nothing is written again. The change
        is the one it carried out, as previewed then (so an approval bound to that preview
        still matches), and ``run()`` reports it with the record's before and after."""
        stored = record.change
        change = Change(
            str(stored.get("summary") or ""),
            dict(stored.get("before") or {}),
            dict(stored.get("after") or {}),
            dict(stored.get("preconditions") or {}),
        )
        message = (
            f"already applied by this run before a restart ({record.phase} step {record.step}, "
            f"written {record.at}), not written again: {change.summary}"
        )
        return cls(change, None, lambda _written: record.after, message, dict(record.after))


class KubeAction(Generic[P]):
    """The ``Action`` protocol for Kubernetes, given two methods.

    A subclass sets the class attributes and implements ``explain()`` (the ``describe()``
    text, from typed params) and ``plan()`` (read live state, return a WritePlan). ``preview()``
    and ``run()`` both call ``plan()``, so what runs is recomputed from the state at run time,
    never taken from an earlier preview. A ``plan()`` that writes an object first asks
    ``api.replayed(obj)`` (this step wrote it already, before a restart) and sends
    ``api.record(obj, change)`` in the same request as its change. Params of the wrong model
    raise ParamsError; a target
    of a kind outside ``target_kinds`` is refused (ActionRefused).
    """

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    risk: ClassVar[Risk]
    disruptive: ClassVar[bool]
    target_kinds: ClassVar[frozenset[str]]
    # A step taken up again after a crash finds its own write record on the object and
    # writes nothing more (remediations/kubernetes/replay.py): safe to call again.
    replay_safe: ClassVar[bool] = True

    def __init__(self, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.retry = retry

    def requires(self, target: Target) -> frozenset[str]:
        """Every Kubernetes action needs the ``"kubernetes"`` client, whatever the target."""
        return frozenset({"kubernetes"})

    def describe(self, target: Target, params: BaseModel) -> str:
        return self.explain(target, self._params(params))

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        plan = await self._checked_plan(ctx, target, params)
        return plan.change

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        """Plan from live state, then write. An error of the plan has not acted (it only
        reads: ``may_have_acted`` False); one of the write keeps its own word (a write whose
        answers were all lost may have acted; one answered 4xx, 409 or 422 did not, unless an
        earlier request of it landed: the write reads back its record where it can)."""
        try:
            plan = await self._checked_plan(ctx, target, params)
        except ActionError as exc:
            exc.may_have_acted = False
            raise
        if plan.applied is not None:
            # Checked before the approval: the approved change is the one already made.
            return Result(
                Outcome.OK, plan.noop_reason, before=plan.change.before, after=plan.applied
            )
        if ctx.approved is not None and not _same(plan.change.preconditions, ctx.approved):
            # The plan is recomputed from live state here; an approval holds only for the
            # state it was given for (the write itself re-checks where it can, e.g. the
            # revision's JSON Patch `test`).
            raise ActionRefused(
                f"{object_ref(target)} changed since the step was approved: preconditions "
                f"{dict(plan.change.preconditions)} no longer match the approved "
                f"{dict(ctx.approved)}; not running it"
            )
        if plan.write is None:
            return Result(
                Outcome.NOOP, plan.noop_reason, before=plan.change.before, after=plan.change.before
            )
        written = await plan.write()
        after = plan.observe(written)
        summary = plan.report(written) if plan.report is not None else plan.change.summary
        if ctx.dry_run:
            return Result(
                Outcome.DRY_RUN,
                f"dry run (validated by the API server, nothing changed): {summary}",
                before=plan.change.before,
                after=after,
            )
        return Result(Outcome.OK, summary, before=plan.change.before, after=after)

    async def _checked_plan(
        self, ctx: ActionContext, target: Target, params: BaseModel
    ) -> WritePlan:
        typed = self._params(params)
        if target.kind not in self.target_kinds:
            raise ActionRefused(
                f"{self.name} acts on {', '.join(sorted(self.target_kinds))}, not {target.kind}"
            )
        return await self.plan(KubeApi(ctx, self.retry, self.name), target, typed)

    def _params(self, params: BaseModel) -> P:
        if not isinstance(params, self.Params):
            raise ParamsError(self.name, f"expected {self.Params.__name__}, got {type(params)}")
        return params  # type: ignore[return-value]

    def explain(self, target: Target, params: P) -> str:
        """One line for humans: what the action would do to ``target``."""
        raise NotImplementedError

    async def plan(self, api: KubeApi, target: Target, params: P) -> WritePlan:
        """Read live state through ``api`` and return the exact write (or a NOOP plan).

        Raises ActionRefused when a precondition says no, TransientActionError when the API
        server stays unreachable.
        """
        raise NotImplementedError
