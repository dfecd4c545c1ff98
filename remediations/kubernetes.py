"""Kubernetes remediations: restart, scale, resources, env, rollback, pod deletion.

Every action reads live state in ``preview()`` and returns the exact change; ``run()`` recomputes
the same plan and writes it. Writes carry ``fieldManager=remediator``, an explicit patch
Content-Type (kubernetes_asyncio otherwise guesses one from the body's Python type), server-side
``dryRun=All`` in dry-run mode, and the run id as an annotation in the same request. The
mechanics mirror kubectl (see research/alertmanager-protocol.md §7).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remediations import k8s_quantity as quantity
from remediations.base import (
    Action,
    ActionContext,
    ActionError,
    ActionRefused,
    Change,
    Outcome,
    ParamsError,
    Result,
    Risk,
)
from remediations.k8s_retry import DEFAULT_RETRY, RetryPolicy, call
from remediations.targets import Target

FIELD_MANAGER = "remediator"
RUN_ID_ANNOTATION = "remediator.io/run-id"
ACTION_ANNOTATION = "remediator.io/action"
# Set in the pod template next to restartedAt, so a retried step of the same run does not
# restart the workload a second time.
RESTART_RUN_ANNOTATION = "remediator.io/restart-run-id"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH = "pod-template-hash"

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
JSON = "application/json"

# apps/v1 method-name infix for each workload kind with a pod template.
_WORKLOADS = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SELECTOR = re.compile(r"^[A-Za-z0-9_./\-=!,()\s]+$")

P = TypeVar("P", bound=BaseModel)


# --------------------------------------------------------------------------------------------
# Plumbing shared by the actions


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _json_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _what(target: Target) -> str:
    return f"{target.kind} {target.namespace}/{target.name}"


class _Api:
    """One action call's view of the cluster: the client, the retry policy, the write options."""

    def __init__(self, ctx: ActionContext, policy: RetryPolicy, action: str) -> None:
        # MissingClient (a refusal) when the service has no Kubernetes credentials.
        self.client: Any = ctx.clients.get("kubernetes")
        self.apps: Any = k8s.AppsV1Api(self.client)
        self.core: Any = k8s.CoreV1Api(self.client)
        self.autoscaling: Any = k8s.AutoscalingV2Api(self.client)
        self.policy = policy
        self.ctx = ctx
        self.action = action

    async def call(
        self, what: str, fn: Callable[[], Awaitable[Any]], *, allow: tuple[int, ...] = ()
    ) -> Any:
        return await call(self.policy, what, fn, allow=allow)

    def to_dict(self, obj: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.client.sanitize_for_serialization(obj)
        return data

    def read_opts(self) -> dict[str, Any]:
        return {"_request_timeout": self.policy.request_timeout}

    def write_opts(self, content_type: str) -> dict[str, Any]:
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

    def stamped_by_this_run(self, obj: Mapping[str, Any]) -> bool:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return bool(
            annotations.get(RUN_ID_ANNOTATION) == self.ctx.run_id
            and annotations.get(ACTION_ANNOTATION) == self.action
        )

    async def read_workload(self, target: Target) -> dict[str, Any]:
        infix = _WORKLOADS[target.kind]
        method = getattr(self.apps, f"read_namespaced_{infix}")
        obj = await self.call(
            _what(target), lambda: method(target.name, target.namespace, **self.read_opts())
        )
        return self.to_dict(obj)

    async def patch_workload(self, target: Target, body: Any, content_type: str) -> dict[str, Any]:
        infix = _WORKLOADS[target.kind]
        method = getattr(self.apps, f"patch_namespaced_{infix}")
        obj = await self.call(
            _what(target),
            lambda: method(target.name, target.namespace, body, **self.write_opts(content_type)),
        )
        return self.to_dict(obj)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What ``run()`` does: ``write`` is None when live state already matches (NOOP)."""

    change: Change
    write: Callable[[], Awaitable[dict[str, Any]]] | None
    observe: Callable[[dict[str, Any]], Mapping[str, Any]]
    noop_reason: str = ""

    @classmethod
    def noop(cls, change: Change, reason: str) -> _Plan:
        """Live state already matches: nothing is written, so nothing is observed either."""
        return cls(change, None, lambda _written: change.before, noop_reason=reason)


class _KubeAction(Generic[P]):
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    risk: ClassVar[Risk]
    disruptive: ClassVar[bool]
    target_kinds: ClassVar[frozenset[str]]

    def __init__(self, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.retry = retry

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset({"kubernetes"})

    def describe(self, target: Target, params: BaseModel) -> str:
        return self._describe(target, self._params(params))

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        plan = await self._checked_plan(ctx, target, params)
        return plan.change

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        plan = await self._checked_plan(ctx, target, params)
        if plan.write is None:
            return Result(
                Outcome.NOOP, plan.noop_reason, before=plan.change.before, after=plan.change.before
            )
        written = await plan.write()
        after = plan.observe(written)
        if ctx.dry_run:
            return Result(
                Outcome.DRY_RUN,
                f"dry run (validated by the API server, nothing changed): {plan.change.summary}",
                before=plan.change.before,
                after=after,
            )
        return Result(Outcome.OK, plan.change.summary, before=plan.change.before, after=after)

    async def _checked_plan(self, ctx: ActionContext, target: Target, params: BaseModel) -> _Plan:
        typed = self._params(params)
        if target.kind not in self.target_kinds:
            raise ActionRefused(
                f"{self.name} acts on {', '.join(sorted(self.target_kinds))}, not {target.kind}"
            )
        return await self._plan(_Api(ctx, self.retry, self.name), target, typed)

    def _params(self, params: BaseModel) -> P:
        if not isinstance(params, self.Params):
            raise ParamsError(self.name, f"expected {self.Params.__name__}, got {type(params)}")
        return params  # type: ignore[return-value]

    def _describe(self, target: Target, params: P) -> str:
        raise NotImplementedError

    async def _plan(self, api: _Api, target: Target, params: P) -> _Plan:
        raise NotImplementedError


def _template(obj: Mapping[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = (obj.get("spec") or {}).get("template") or {}
    return template


def _containers(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = (template.get("spec") or {}).get("containers") or []
    return containers


def _container(obj: Mapping[str, Any], name: str, target: Target) -> dict[str, Any]:
    containers = _containers(_template(obj))
    for container in containers:
        if container.get("name") == name:
            return container
    names = ", ".join(c.get("name", "?") for c in containers) or "none"
    raise ActionRefused(f"container {name!r} not found in {_what(target)}; its containers: {names}")


def _images(template: Mapping[str, Any]) -> dict[str, str]:
    return {c.get("name", "?"): c.get("image", "") for c in _containers(template)}


def _refuse_paused(obj: Mapping[str, Any], target: Target, verb: str) -> None:
    if target.kind == "Deployment" and (obj.get("spec") or {}).get("paused"):
        raise ActionRefused(
            f"can't {verb} paused deployment {target.namespace}/{target.name} "
            "(run rollout resume first)"
        )


# --------------------------------------------------------------------------------------------
# kubernetes.rollout_restart


class RestartParams(_Params):
    pass


class RolloutRestart(_KubeAction[RestartParams]):
    """``kubectl rollout restart``: stamp the pod template so the controller rolls new pods."""

    name: ClassVar[str] = "kubernetes.rollout_restart"
    Params: ClassVar[type[BaseModel]] = RestartParams
    risk: ClassVar[Risk] = Risk.LOW
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset(_WORKLOADS)

    def _describe(self, target: Target, params: RestartParams) -> str:
        return f"rollout restart {_what(target)} (new pods replace the old ones)"

    async def _plan(self, api: _Api, target: Target, params: RestartParams) -> _Plan:
        obj = await api.read_workload(target)
        _refuse_paused(obj, target, "restart")
        annotations = (_template(obj).get("metadata") or {}).get("annotations") or {}
        before = {"restartedAt": annotations.get(RESTARTED_AT)}
        if annotations.get(RESTART_RUN_ANNOTATION) == api.ctx.run_id:
            return _Plan.noop(
                Change(f"{_what(target)} was already restarted by this run", before, before),
                f"already restarted by run {api.ctx.run_id} at {annotations.get(RESTARTED_AT)}",
            )
        now = _now_rfc3339()
        body = {
            "metadata": {"annotations": api.stamp()},
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {RESTARTED_AT: now, RESTART_RUN_ANNOTATION: api.ctx.run_id}
                    }
                }
            },
        }

        def observe(written: dict[str, Any]) -> Mapping[str, Any]:
            ann = (_template(written).get("metadata") or {}).get("annotations") or {}
            return {"restartedAt": ann.get(RESTARTED_AT)}

        return _Plan(
            Change(
                f"restart {_what(target)}: set pod template annotation {RESTARTED_AT}={now}",
                before=before,
                after={"restartedAt": now},
            ),
            lambda: api.patch_workload(target, body, STRATEGIC_MERGE),
            observe,
        )


# --------------------------------------------------------------------------------------------
# kubernetes.scale


class ScaleParams(_Params):
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

    def desired(self, current: int, recorded: int | None) -> int:
        if self.restore:
            if recorded is None:
                raise ActionRefused("nothing recorded to restore: no earlier kubernetes.scale step")
            wanted = recorded
        elif self.replicas is not None:
            wanted = self.replicas
        elif self.delta is not None:
            wanted = current + self.delta
        else:
            assert self.factor is not None
            # Round away from the current count, so a factor always moves by at least one.
            raw = current * self.factor
            wanted = math.ceil(raw) if self.factor >= 1 else math.floor(raw)
        return max(self.min, min(self.max, wanted))


_SCALE_INFIX = {"Deployment": "deployment", "StatefulSet": "stateful_set"}


class Scale(_KubeAction[ScaleParams]):
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

    def _describe(self, target: Target, params: ScaleParams) -> str:
        if params.restore:
            how = "back to the recorded replica count"
        elif params.replicas is not None:
            how = f"to {params.replicas} replicas"
        elif params.delta is not None:
            how = f"by {params.delta:+d} replicas"
        else:
            how = f"by a factor of {params.factor}"
        return f"scale {_what(target)} {how}, within [{params.min}, {params.max}]"

    async def _plan(self, api: _Api, target: Target, params: ScaleParams) -> _Plan:
        infix = _SCALE_INFIX[target.kind]
        read = getattr(api.apps, f"read_namespaced_{infix}_scale")
        replace = getattr(api.apps, f"replace_namespaced_{infix}_scale")
        scale = api.to_dict(
            await api.call(
                _what(target), lambda: read(target.name, target.namespace, **api.read_opts())
            )
        )
        await self._refuse_autoscaled(api, target)
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        recorded_raw = (api.ctx.recorded.get(self.name) or {}).get("replicas")
        recorded = int(recorded_raw) if recorded_raw is not None else None
        desired = params.desired(current, recorded)
        before = {"replicas": current}
        after = {"replicas": desired}
        if desired == current:
            return _Plan.noop(
                Change(f"{_what(target)} already has {current} replicas", before, before),
                f"{_what(target)} already has {current} replicas",
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
            with contextlib.suppress(ActionError):
                await api.patch_workload(
                    target, {"metadata": {"annotations": api.stamp()}}, MERGE_PATCH
                )
            return written

        async def write_replicas() -> dict[str, Any]:
            # The Scale's resourceVersion is the Deployment's, which the controller bumps with
            # every status write: a 409 is usually that, not a rival scaler. Re-read; resend
            # only while the replica count is still the one the plan started from.
            for _ in range(self.conflict_attempts):
                try:
                    obj = await api.call(
                        _what(target),
                        lambda: replace(
                            target.name, target.namespace, body, **api.write_opts(JSON)
                        ),
                        allow=(409,),
                    )
                    return api.to_dict(obj)
                except ApiException:
                    fresh = api.to_dict(
                        await api.call(
                            _what(target),
                            lambda: read(target.name, target.namespace, **api.read_opts()),
                        )
                    )
                    now = int((fresh.get("spec") or {}).get("replicas") or 0)
                    if now == desired and not api.ctx.dry_run:
                        return fresh  # an earlier attempt landed but its answer was lost
                    if now != current:
                        raise ActionRefused(
                            f"replicas of {_what(target)} changed concurrently from {current} "
                            f"to {now}; not scaling"
                        ) from None
                    body["metadata"]["resourceVersion"] = (fresh.get("metadata") or {}).get(
                        "resourceVersion"
                    )
            raise ActionRefused(
                f"{_what(target)} kept changing ({self.conflict_attempts} conflicts); not scaling"
            )

        return _Plan(
            Change(
                f"scale {_what(target)} from {current} to {desired} replicas",
                before,
                after,
                preconditions={"replicas": current},
            ),
            write,
            lambda written: {"replicas": (written.get("spec") or {}).get("replicas")},
        )

    async def _refuse_autoscaled(self, api: _Api, target: Target) -> None:
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
                    f"{_what(target)} is managed by HorizontalPodAutoscaler "
                    f"{target.namespace}/{hpa_name}; change the HPA's minReplicas/maxReplicas "
                    "instead"
                )


# --------------------------------------------------------------------------------------------
# kubernetes.set_resources


class QuantityChange(_Params):
    """``{value: "512Mi"}`` or ``{factor: 1.5, max: "4Gi"}`` (the cap is mandatory)."""

    value: str | None = None
    factor: float | None = Field(default=None, gt=0, le=10)
    max: str | None = None

    @field_validator("value", "max")
    @classmethod
    def _quantity(cls, text: str | None) -> str | None:
        if text is None:
            return None
        try:
            return quantity.canonical(text)
        except quantity.QuantityError as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _one_mode(self) -> QuantityChange:
        if (self.value is None) == (self.factor is None):
            raise ValueError("give exactly one of value or factor")
        if self.factor is not None and self.max is None:
            raise ValueError("factor needs max (a cap such as 4Gi)")
        if self.value is not None and self.max is not None:
            raise ValueError("max applies to factor only")
        return self


_RESOURCE_FIELDS: dict[str, tuple[Literal["limits", "requests"], str]] = {
    "memory_limit": ("limits", "memory"),
    "memory_request": ("requests", "memory"),
    "cpu_limit": ("limits", "cpu"),
    "cpu_request": ("requests", "cpu"),
}


class SetResourcesParams(_Params):
    container: str
    memory_limit: QuantityChange | None = None
    memory_request: QuantityChange | None = None
    cpu_limit: QuantityChange | None = None
    cpu_request: QuantityChange | None = None

    @field_validator("container")
    @classmethod
    def _container_name(cls, name: str) -> str:
        if not _DNS_LABEL.match(name):
            raise ValueError(f"{name!r} is not a container name (DNS-1123 label)")
        return name

    @model_validator(mode="after")
    def _something(self) -> SetResourcesParams:
        if not self.changes():
            raise ValueError(f"give at least one of {', '.join(_RESOURCE_FIELDS)}")
        return self

    def changes(self) -> dict[tuple[str, str], QuantityChange]:
        out: dict[tuple[str, str], QuantityChange] = {}
        for field_name, key in _RESOURCE_FIELDS.items():
            change = getattr(self, field_name)
            if change is not None:
                out[key] = change
        return out


def _pick_resources(container: Mapping[str, Any], keys: list[tuple[str, str]]) -> dict[str, Any]:
    resources = container.get("resources") or {}
    picked: dict[str, Any] = {"container": container.get("name")}
    for section, resource in keys:
        picked.setdefault(section, {})[resource] = (resources.get(section) or {}).get(resource)
    return picked


class SetResources(_KubeAction[SetResourcesParams]):
    """Set one container's cpu/memory limits and requests (a new rollout follows)."""

    name: ClassVar[str] = "kubernetes.set_resources"
    Params: ClassVar[type[BaseModel]] = SetResourcesParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset(_WORKLOADS)

    def _describe(self, target: Target, params: SetResourcesParams) -> str:
        parts = []
        for (section, resource), change in params.changes().items():
            how = (
                f"= {change.value}"
                if change.value is not None
                else f"x{change.factor} (at most {change.max})"
            )
            parts.append(f"{resource} {section[:-1]} {how}")
        return f"set {', '.join(parts)} on container {params.container} of {_what(target)}"

    async def _plan(self, api: _Api, target: Target, params: SetResourcesParams) -> _Plan:
        obj = await api.read_workload(target)
        container = _container(obj, params.container, target)
        changes = params.changes()
        keys = list(changes)
        before = _pick_resources(container, keys)
        relative = any(c.factor is not None for c in changes.values())
        if relative and api.stamped_by_this_run(obj):
            # A factor applied twice compounds; the stamp says this run already applied it.
            return _Plan.noop(
                Change(f"{_what(target)} was already changed by this run", before, before),
                f"already applied by run {api.ctx.run_id}",
            )
        after: dict[str, Any] = {"container": params.container}
        patch_resources: dict[str, dict[str, str]] = {}
        for (section, resource), change in changes.items():
            current = before[section][resource]
            if change.value is not None:
                new = change.value
            else:
                assert change.factor is not None
                assert change.max is not None
                if current is None:
                    raise ActionRefused(
                        f"container {params.container} of {_what(target)} has no {resource} "
                        f"{section[:-1]} to multiply by {change.factor}; give a value instead"
                    )
                new = quantity.scale(current, change.factor, change.max, resource=resource)
            after.setdefault(section, {})[resource] = new
            patch_resources.setdefault(section, {})[resource] = new
        if all(quantity.equal(before[s][r], after[s][r]) for s, r in keys):
            return _Plan.noop(
                Change(f"{_what(target)} already has these resources", before, before),
                f"container {params.container} already has these resources",
            )
        body = {
            "metadata": {"annotations": api.stamp()},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": params.container, "resources": patch_resources}]
                    }
                }
            },
        }
        summary = ", ".join(
            f"{r} {s[:-1]} {before[s][r] or 'unset'} -> {after[s][r]}" for s, r in keys
        )
        return _Plan(
            Change(f"{_what(target)} container {params.container}: {summary}", before, after),
            lambda: api.patch_workload(target, body, STRATEGIC_MERGE),
            lambda written: _pick_resources(_container(written, params.container, target), keys),
        )


# --------------------------------------------------------------------------------------------
# kubernetes.set_env


class SetEnvParams(_Params):
    container: str
    name: str = Field(min_length=1, max_length=253)
    value: str = Field(max_length=32768)

    @field_validator("container")
    @classmethod
    def _container_name(cls, name: str) -> str:
        if not _DNS_LABEL.match(name):
            raise ValueError(f"{name!r} is not a container name (DNS-1123 label)")
        return name

    @field_validator("name")
    @classmethod
    def _env_name(cls, name: str) -> str:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
        return name


class SetEnv(_KubeAction[SetEnvParams]):
    """Set one environment variable of one container (a new rollout follows)."""

    name: ClassVar[str] = "kubernetes.set_env"
    Params: ClassVar[type[BaseModel]] = SetEnvParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset(_WORKLOADS)

    def _describe(self, target: Target, params: SetEnvParams) -> str:
        return f"set env {params.name} on container {params.container} of {_what(target)}"

    async def _plan(self, api: _Api, target: Target, params: SetEnvParams) -> _Plan:
        obj = await api.read_workload(target)
        container = _container(obj, params.container, target)

        def pick(c: Mapping[str, Any]) -> dict[str, Any]:
            for var in c.get("env") or []:
                if var.get("name") == params.name:
                    if "valueFrom" in var:
                        return {
                            "container": params.container,
                            "name": params.name,
                            "value": None,
                            "valueFrom": var["valueFrom"],
                        }
                    return {
                        "container": params.container,
                        "name": params.name,
                        "value": var.get("value", ""),
                    }
            return {"container": params.container, "name": params.name, "value": None}

        before = pick(container)
        after = {"container": params.container, "name": params.name, "value": params.value}
        if before == after:
            return _Plan.noop(
                Change(f"{params.name} is already set", before, before),
                f"{params.name} already has that value in {params.container}",
            )
        var: dict[str, Any] = {"name": params.name, "value": params.value}
        if "valueFrom" in before:
            var["valueFrom"] = None  # a literal value replaces the reference
        body = {
            "metadata": {"annotations": api.stamp()},
            "spec": {
                "template": {"spec": {"containers": [{"name": params.container, "env": [var]}]}}
            },
        }
        return _Plan(
            Change(
                f"set {params.name} on container {params.container} of {_what(target)}",
                before,
                after,
            ),
            lambda: api.patch_workload(target, body, STRATEGIC_MERGE),
            lambda written: pick(_container(written, params.container, target)),
        )


# --------------------------------------------------------------------------------------------
# kubernetes.rollout_undo


class UndoParams(_Params):
    """``to_revision`` picks the revision (default: the previous one). ``expected_revision`` is
    the Deployment's revision when the change was approved; the worker fills both from the
    preview's preconditions so the approved rollback, and only it, is executed."""

    to_revision: int | None = Field(default=None, ge=1)
    expected_revision: int | None = Field(default=None, ge=1)


def _revision(obj: Mapping[str, Any]) -> int | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


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


def _selector_string(selector: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


class RolloutUndo(_KubeAction[UndoParams]):
    """``kubectl rollout undo`` bound to a revision: JSON Patch with a ``test`` on the revision."""

    name: ClassVar[str] = "kubernetes.rollout_undo"
    Params: ClassVar[type[BaseModel]] = UndoParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment"})

    def _describe(self, target: Target, params: UndoParams) -> str:
        to = f"revision {params.to_revision}" if params.to_revision else "the previous revision"
        return f"roll {_what(target)} back to {to}"

    async def _plan(self, api: _Api, target: Target, params: UndoParams) -> _Plan:
        obj = await api.read_workload(target)
        _refuse_paused(obj, target, "roll back")
        current = _revision(obj)
        if current is None:
            raise ActionRefused(f"{_what(target)} has no revision yet (no rollout history)")
        if params.expected_revision is not None and params.expected_revision != current:
            raise ActionRefused(
                f"revision changed: the rollback was planned at revision "
                f"{params.expected_revision} of {_what(target)}, which is now at {current}"
            )
        uid = (obj.get("metadata") or {}).get("uid")
        selector = _selector_string((obj.get("spec") or {}).get("selector") or {})
        rs_list = await api.call(
            f"ReplicaSets of {_what(target)}",
            lambda: api.apps.list_namespaced_replica_set(
                target.namespace, label_selector=selector, **api.read_opts()
            ),
        )
        history: dict[int, dict[str, Any]] = {}
        for rs in api.to_dict(rs_list).get("items") or []:
            refs = (rs.get("metadata") or {}).get("ownerReferences") or []
            if not any(r.get("controller") and r.get("uid") == uid for r in refs):
                continue
            rev = _revision(rs)
            if rev is not None:
                history[rev] = rs
        if params.to_revision is not None:
            to = params.to_revision
            if to not in history:
                raise ActionRefused(
                    f"no rollout history found for revision {to} of {_what(target)}; "
                    f"known revisions: {', '.join(map(str, sorted(history))) or 'none'}"
                )
        else:
            older = sorted(r for r in history if r < current)
            if not older:
                raise ActionRefused(f"{_what(target)} has no previous revision to roll back to")
            to = older[-1]
        rs = history[to]
        rs_name = (rs.get("metadata") or {}).get("name")
        template = _without_hash(_template(rs))
        before = {"revision": current, "images": _images(_template(obj))}
        after = {"to_revision": to, "replicaset": rs_name, "images": _images(template)}
        preconditions = {
            "current_revision": str(current),
            "to_revision": str(to),
            "replicaset": rs_name,
        }
        if template == _without_hash(_template(obj)):
            return _Plan.noop(
                Change(
                    f"{_what(target)} already runs the template of revision {to}",
                    before,
                    after,
                    preconditions,
                ),
                f"{_what(target)} already runs the template of revision {to}",
            )
        ops: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": f"/metadata/annotations/{_json_pointer(REVISION)}",
                "value": str(current),
            },
            {"op": "replace", "path": "/spec/template", "value": template},
        ]
        for key, value in api.stamp().items():
            ops.append(
                {"op": "add", "path": f"/metadata/annotations/{_json_pointer(key)}", "value": value}
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
                now = _revision(await api.read_workload(target))
                if now != current:
                    raise ActionRefused(
                        f"revision changed: {_what(target)} is at revision {now}, not "
                        f"{current} as planned; not rolling back"
                    ) from cause
                raise

        return _Plan(
            Change(
                f"roll {_what(target)} back from revision {current} to revision {to} "
                f"(ReplicaSet {rs_name})",
                before,
                after,
                preconditions,
            ),
            write,
            lambda written: {
                "to_revision": to,
                "replicaset": rs_name,
                "images": _images(_template(written)),
            },
        )


# --------------------------------------------------------------------------------------------
# kubernetes.delete_pod


class DeletePodParams(_Params):
    """One named ``pod``, or up to ``max_pods`` pods matching ``selector`` (a Deployment target
    adds its own selector, so only its pods qualify). With neither, a Pod target deletes itself
    and a Deployment target deletes up to ``max_pods`` of its pods."""

    pod: str | None = None
    selector: str | None = Field(default=None, min_length=1, max_length=1000)
    max_pods: int = Field(default=1, ge=1, le=10)
    grace_period_seconds: int | None = Field(default=None, ge=0, le=3600)

    @field_validator("pod")
    @classmethod
    def _pod_name(cls, name: str | None) -> str | None:
        if name is not None and not _DNS_SUBDOMAIN.match(name):
            raise ValueError(f"{name!r} is not a pod name (DNS-1123 subdomain)")
        return name

    @field_validator("selector")
    @classmethod
    def _selector(cls, selector: str | None) -> str | None:
        if selector is not None and not _SELECTOR.match(selector):
            raise ValueError(f"{selector!r} is not a label selector")
        return selector

    @model_validator(mode="after")
    def _not_both(self) -> DeletePodParams:
        if self.pod is not None and self.selector is not None:
            raise ValueError("give pod or selector, not both")
        return self


def _pod_sort_key(pod: Mapping[str, Any]) -> tuple[bool, str, str]:
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    metadata = pod.get("metadata") or {}
    # Unready pods first (they are the likely culprits), then the oldest.
    return (ready, str(metadata.get("creationTimestamp") or ""), str(metadata.get("name")))


class DeletePod(_KubeAction[DeletePodParams]):
    """Delete pods so their controller replaces them. Deleting an absent pod is a NOOP."""

    name: ClassVar[str] = "kubernetes.delete_pod"
    Params: ClassVar[type[BaseModel]] = DeletePodParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Pod", "Deployment"})

    def _describe(self, target: Target, params: DeletePodParams) -> str:
        if target.kind == "Pod":
            return f"delete pod {target.namespace}/{params.pod or target.name}"
        which = f"pod {params.pod}" if params.pod else f"up to {params.max_pods} pod(s)"
        extra = f" matching {params.selector}" if params.selector else ""
        return f"delete {which}{extra} of {_what(target)}"

    async def _candidates(
        self, api: _Api, target: Target, params: DeletePodParams
    ) -> list[dict[str, Any]]:
        ns = target.namespace
        if target.kind == "Pod":
            if params.selector is not None:
                raise ActionRefused("a selector needs a Deployment target, not a Pod")
            if params.pod is not None and params.pod != target.name:
                raise ActionRefused(
                    f"params.pod {params.pod!r} differs from the target pod {target.name!r}"
                )
            try:
                pod = await api.call(
                    _what(target),
                    lambda: api.core.read_namespaced_pod(target.name, ns, **api.read_opts()),
                    allow=(404,),
                )
            except ApiException:
                return []
            return [api.to_dict(pod)]
        deployment = await api.read_workload(target)
        selector = _selector_string((deployment.get("spec") or {}).get("selector") or {})
        if not selector:
            raise ActionRefused(f"{_what(target)} has an empty selector; refusing to delete pods")
        if params.selector:
            selector = f"{selector},{params.selector}"
        kwargs: dict[str, Any] = {"label_selector": selector, **api.read_opts()}
        if params.pod is not None:
            kwargs["field_selector"] = f"metadata.name={params.pod}"
        pods = await api.call(
            f"pods of {_what(target)}", lambda: api.core.list_namespaced_pod(ns, **kwargs)
        )
        return [p for p in api.to_dict(pods).get("items") or []]

    async def _plan(self, api: _Api, target: Target, params: DeletePodParams) -> _Plan:
        pods = [
            p
            for p in await self._candidates(api, target, params)
            if not (p.get("metadata") or {}).get("deletionTimestamp")
        ]
        pods.sort(key=_pod_sort_key)
        chosen = pods[: params.max_pods]
        names = [p["metadata"]["name"] for p in chosen]
        before = {"pods": names}
        if not chosen:
            return _Plan.noop(
                Change(f"no pod to delete for {_what(target)}", before, {"deleted": []}),
                f"no (live) pod to delete for {_what(target)}",
            )
        ns = target.namespace

        async def write() -> dict[str, Any]:
            deleted: list[str] = []
            for pod in chosen:
                meta = pod["metadata"]
                # The uid precondition deletes the pod we looked at, never a namesake that
                # replaced it in between (StatefulSet pods keep their names).
                options: dict[str, Any] = {"preconditions": {"uid": meta["uid"]}}
                if params.grace_period_seconds is not None:
                    options["gracePeriodSeconds"] = params.grace_period_seconds
                # With a DeleteOptions body the API server ignores the query parameters, so
                # ?dryRun=All would be dropped silently and the pod really deleted.
                if api.ctx.dry_run:
                    options["dryRun"] = ["All"]
                opts: dict[str, Any] = {"_content_type": JSON, **api.read_opts()}
                try:
                    await api.call(
                        f"Pod {ns}/{meta['name']}",
                        functools.partial(
                            api.core.delete_namespaced_pod, meta["name"], ns, body=options, **opts
                        ),
                        allow=(404, 409),
                    )
                except ApiException:
                    continue  # already gone or replaced: nothing of ours to delete
                deleted.append(meta["name"])
            return {"deleted": deleted}

        return _Plan(
            Change(
                f"delete pod(s) {', '.join(names)} in namespace {ns}",
                before,
                {"deleted": names},
                preconditions={"uids": [p["metadata"]["uid"] for p in chosen]},
            ),
            write,
            _identity,
        )


def _identity(written: dict[str, Any]) -> Mapping[str, Any]:
    return written


ACTIONS: list[Action] = [
    RolloutRestart(),
    Scale(),
    SetResources(),
    SetEnv(),
    RolloutUndo(),
    DeletePod(),
]
