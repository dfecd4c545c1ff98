"""The per-call view of the Kubernetes API every action writes through, and the write plan.

``KubeApi`` reads and writes with what kubectl sends (``fieldManager``, an explicit patch
Content-Type, server-side ``dryRun=All``) plus the run's stamp and the step's write record
(``replay``), and conditions a write that adds a record on the resourceVersion it was planned
from (``patch_read``: the record's slot was chosen from that read; ``WriteConflict``), and
refuses one whose record, or the annotations it leaves, would be too large (``record_size``).
``WritePlan`` is what an action's ``plan()`` returns. ``api`` re-exports all of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remediations.base import ActionContext, ActionRefused, Change
from remediations.kubernetes.api_errors import is_api_exception
from remediations.kubernetes.objects import WORKLOADS, is_controlled_by, object_ref, selector_string
from remediations.kubernetes.record_size import (
    check_record,
    check_replica_sets,
    check_room,
    merged,
)
from remediations.kubernetes.replay import (
    StepId,
    WriteRecord,
    find_record,
    now_rfc3339,
    record_annotations,
)
from remediations.kubernetes.retry import RetryPolicy, call
from remediations.request_timeout import request_timeout
from remediations.targets import Target

__all__ = [
    "ACTION_ANNOTATION",
    "FIELD_MANAGER",
    "JSON",
    "JSON_PATCH",
    "MERGE_PATCH",
    "RUN_ID_ANNOTATION",
    "STRATEGIC_MERGE",
    "KubeApi",
    "WriteConflict",
    "WritePlan",
]

FIELD_MANAGER = "remediator"
RUN_ID_ANNOTATION = "remediator.io/run-id"
ACTION_ANNOTATION = "remediator.io/action"

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
JSON = "application/json"


class WriteConflict(ActionRefused):
    """A write conditioned on the ``resourceVersion`` it read got 409: the object changed
    between the read and the write, and nothing was written. ``KubeAction.run`` plans the step
    again from the object as it is; raised to the caller only as the refusal it then gives."""


class KubeApi:
    """One action call's view of the cluster: the client, the retry policy, the write options.

    Built per call from ``ctx``; raises MissingClient (an ActionRefused) when the service has
    no Kubernetes client. ``apps``, ``core``, ``autoscaling`` and ``policy_api`` (policy/v1)
    are the typed API groups;
    every request goes through ``call()``, so it is retried and its errors mapped as
    ``retry.call`` describes.
    """

    def __init__(self, ctx: ActionContext, policy: RetryPolicy, action: str) -> None:
        self.client: Any = ctx.clients.get("kubernetes")
        # Imported here, past MissingClient: a process without a client never loads the
        # client library (``api_errors``); one with a client has loaded it already.
        from kubernetes_asyncio import client as k8s

        self.apps: Any = k8s.AppsV1Api(self.client)
        self.core: Any = k8s.CoreV1Api(self.client)
        self.autoscaling: Any = k8s.AutoscalingV2Api(self.client)
        self.policy_api: Any = k8s.PolicyV1Api(self.client)
        self.policy = policy
        self.ctx = ctx
        self.action = action
        # The step whose write record this call writes and looks for; None outside a run's steps.
        self.step = StepId.of(ctx.run_id, ctx.phase, ctx.step)

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
        """Keyword options for a read: the per-request timeout (``request_timeout``: its
        connection bounded apart, so one never made says it sent nothing)."""
        return {"_request_timeout": request_timeout(self.policy.request_timeout)}

    def write_opts(self, content_type: str) -> dict[str, Any]:
        """Keyword options for a write: field manager, explicit Content-Type, timeout, and
        server-side ``dryRun=All`` when the run is a dry run."""
        # The stubs of kubernetes_asyncio omit _content_type, hence a plain dict of options.
        opts: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "_content_type": content_type,
            "_request_timeout": request_timeout(self.policy.request_timeout),
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
        return find_record(obj, self.step, self.action)

    def record(
        self,
        obj: Mapping[str, Any],
        change: Change,
        *,
        after: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        leaves: Mapping[str, str] | None = None,
        replica_sets: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, str | None]:
        """Annotations to send with the write that carries out ``change`` on ``obj``: this
        step's write record in the slot ``replay.record_annotations`` picks from ``obj`` as read
        (``after``: what the Result will report, default ``change.after``; ``extra``: facts
        the action needs on a replay), and None for old records to remove. Send them
        conditioned on ``obj``'s resourceVersion (``patch_read``). Empty outside a run's steps
        and in a dry run (nothing is kept).

        Raises, before anything is sent (``may_have_acted`` False), RecordTooLarge when the
        record would pass ``record_size.RECORD_CAP`` and AnnotationsTooLarge when ``obj``'s
        annotations with it and this run's ``stamp()`` would pass
        ``record_size.ANNOTATION_BUDGET`` (``record_size.check_room``), or what one of
        ``replica_sets`` (the Deployment's: every one, ``template_record``; the one a
        ``rollout_undo`` goes back to) could carry once the template returns to its own
        (``record_size.check_replica_sets``); in a dry run too, so it shows what the write
        would meet. ``leaves``: the annotations the write leaves on ``obj`` besides the stamp
        and the record, when it replaces them (``rollout_undo``: the ReplicaSet's it goes back
        to); default ``obj``'s own."""
        if self.step is None:
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
        meta = obj.get("metadata") or {}
        # Reads return the kind; without it, the stricter check (a Deployment's copies).
        kind = str(obj.get("kind") or "Deployment")
        ref = f"{kind} {meta.get('namespace')}/{meta.get('name')}"
        check_record(ref, record)
        patch = record_annotations(obj, record)
        base = (meta.get("annotations") or {}) if leaves is None else leaves
        after_write = merged(base, {**self.stamp(), **patch})
        check_room(ref, after_write, copied=kind == "Deployment")
        check_replica_sets(ref, after_write, [_named(rs) for rs in replica_sets])
        return {} if self.ctx.dry_run else patch

    async def template_record(
        self, target: Target, obj: Mapping[str, Any], change: Change
    ) -> dict[str, str | None]:
        """``record()`` for a write that changes the pod template of ``target`` (read as
        ``obj``) to one it may have run before (set_env, set_resources): on a Deployment, also
        checked against every ReplicaSet it controls, any of which the controller reuses when
        the template returns to its own, keeping what it has and copying the Deployment's
        annotations on top. Lists them only when a record is written (a run's step)."""
        replica_sets: list[dict[str, Any]] = []
        if self.step is not None and target.kind == "Deployment":
            replica_sets = await self.controlled_replica_sets(target, obj)
        return self.record(obj, change, replica_sets=replica_sets)

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
        self,
        target: Target,
        body: Any,
        content_type: str,
        *,
        allow: tuple[int, ...] = (),
        sent: list[None] | None = None,
    ) -> dict[str, Any]:
        """PATCH the workload ``target`` with ``body`` sent as ``content_type``; the object the
        API server returns (after the write, or as it would be in a dry run), as a dict.
        ``allow``: statuses raised as the ApiException itself (``retry.call``). ``sent``, when
        given, gets one item appended per request sent (retries included)."""
        infix = WORKLOADS[target.kind]
        method = getattr(self.apps, f"patch_namespaced_{infix}")

        def send() -> Awaitable[Any]:
            if sent is not None:
                sent.append(None)
            return method(  # type: ignore[no-any-return]
                target.name, target.namespace, body, **self.write_opts(content_type)
            )

        obj = await self.call(object_ref(target), send, allow=allow)
        return self.to_dict(obj)

    async def patch_read(
        self,
        target: Target,
        obj: Mapping[str, Any],
        body: Any,
        content_type: str,
        *,
        conditioned: bool = True,
    ) -> dict[str, Any]:
        """``patch_workload`` conditioned on the resourceVersion of ``obj`` (the workload as
        read, whose slots the body's write record was chosen from): a merge or strategic
        merge ``body`` (a dict) gets it as ``metadata.resourceVersion``, a JSON Patch (a list)
        an op replacing it; the API server answers 409 when the object changed since (its
        store compares the patched object's resourceVersion with the stored one). Raises
        WriteConflict on that 409: nothing was written. ``conditioned=False`` (a write that
        carries no record: outside a run's steps, a dry run) sends ``body`` as it is, as
        kubectl does."""
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if not conditioned:
            return await self.patch_workload(target, body, content_type)
        if isinstance(body, list):
            op = {"op": "replace", "path": "/metadata/resourceVersion", "value": version}
            body = [*body, op]
        else:
            body = {
                **body,
                "metadata": {**(body.get("metadata") or {}), "resourceVersion": version},
            }
        sent: list[None] = []
        try:
            return await self.patch_workload(target, body, content_type, allow=(409,), sent=sent)
        except Exception as exc:
            if not is_api_exception(exc):
                raise
            # A 409 on a retry: the try before it got no answer and may have landed (its own
            # change would move the resourceVersion), so this conflict may follow a write.
            landed = len(sent) > 1
            raise WriteConflict(
                f"{object_ref(target)} changed between the read and the write "
                f"(resourceVersion {version} is no longer current"
                + ("; an earlier try got no answer and may have landed)" if landed else ")"),
                may_have_acted=landed,
            ) from exc

    async def patch_template(
        self,
        target: Target,
        template: Mapping[str, Any],
        obj: Mapping[str, Any],
        record: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """Change the pod template of the workload ``target`` (read as ``obj``): ``template``
        (a partial ``spec.template``) as a strategic merge patch, with this run's ``stamp()``
        and the step's write ``record`` (``record(obj, ...)``) on the object, in the same
        request, conditioned on ``obj``'s resourceVersion when it carries a record
        (``patch_read``: WriteConflict when it changed). A new rollout follows. Returns as
        ``patch_workload``."""
        annotations = {**self.stamp(), **(record or {})}
        body = {"metadata": {"annotations": annotations}, "spec": {"template": template}}
        return await self.patch_read(target, obj, body, STRATEGIC_MERGE, conditioned=bool(record))


def _named(rs: Mapping[str, Any]) -> tuple[str, Mapping[str, str]]:
    meta = rs.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}", meta.get("annotations") or {}


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
