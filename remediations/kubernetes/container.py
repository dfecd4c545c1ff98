"""Actions that edit one container of a workload's pod template (a new rollout follows, but
for ``OnDelete`` workloads: ``objects.held_back``): ``kubernetes.set_resources`` (cpu/memory
limits and requests) and ``kubernetes.set_env``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from remediations import names
from remediations.base import ActionRefused, Change, Risk
from remediations.kubernetes import quantity
from remediations.kubernetes.api import (
    ActionParams,
    KubeAction,
    KubeApi,
    WritePlan,
)
from remediations.kubernetes.objects import (
    WORKLOADS,
    env_edit,
    find_container,
    held_back,
    object_ref,
    refuse_duplicate_env,
    refuse_paused_edit,
    template_edit,
)
from remediations.kubernetes.record_size import RECORD_CAP, RecordTooLarge, fitting_bytes
from remediations.params import Number
from remediations.targets import Target

__all__ = ["QuantityChange", "SetEnv", "SetEnvParams", "SetResources", "SetResourcesParams"]


def _container_name(name: str) -> str:
    # Kubernetes validates container names as DNS-1123 labels.
    if not names.is_dns1123_label(name):
        raise ValueError(f"{name!r} is not a container name (DNS-1123 label)")
    return name


class QuantityChange(ActionParams):
    """``{value: "512Mi"}`` or ``{factor: 1.5, max: "4Gi"}`` (the cap is mandatory)."""

    value: str | None = None
    factor: Number | None = Field(default=None, gt=0, le=10)
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


class SetResourcesParams(ActionParams):
    """The ``container`` (a DNS-1123 label) and at least one of the four quantities."""

    container: str
    memory_limit: QuantityChange | None = None
    memory_request: QuantityChange | None = None
    cpu_limit: QuantityChange | None = None
    cpu_request: QuantityChange | None = None

    @field_validator("container")
    @classmethod
    def _container(cls, name: str) -> str:
        return _container_name(name)

    @field_validator(*_RESOURCE_FIELDS, mode="before")
    @classmethod
    def _unit_slips(cls, raw: Any, info: ValidationInfo) -> Any:
        # Memory in fractions of a byte ("512m"), cpu in binary multiples of a core ("1Ki").
        # Before the canonical form, so the message quotes the text as written.
        memory = (info.field_name or "").startswith("memory")
        slip = quantity.fraction_of_a_byte if memory else quantity.binary_cpu
        for key in ("value", "max"):
            text = raw.get(key) if isinstance(raw, Mapping) else None
            if isinstance(text, str) and (problem := slip(text)):
                raise ValueError(f"{key}: {problem}")
        return raw

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


class SetResources(KubeAction[SetResourcesParams]):
    """Set one container's cpu/memory limits and requests (a new rollout follows). Refuses,
    in the preview, a paused Deployment (``objects.refuse_paused_edit``) and a write that
    would leave too little annotation room (AnnotationsTooLarge, ``KubeApi.template_record``;
    on a Deployment it lists its ReplicaSets for that)."""

    name: ClassVar[str] = "kubernetes.set_resources"
    Params: ClassVar[type[BaseModel]] = SetResourcesParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset(WORKLOADS)

    def explain(self, target: Target, params: SetResourcesParams) -> str:
        parts = []
        for (section, resource), change in params.changes().items():
            how = (
                f"= {change.value}"
                if change.value is not None
                else f"x{change.factor} (at most {change.max})"
            )
            parts.append(f"{resource} {section[:-1]} {how}")
        return f"set {', '.join(parts)} on container {params.container} of {object_ref(target)}"

    async def plan(self, api: KubeApi, target: Target, params: SetResourcesParams) -> WritePlan:
        obj = await api.read_workload(target)
        replayed = api.replayed(obj)
        if replayed is not None:
            return replayed
        refuse_paused_edit(obj, target)
        container = find_container(obj, params.container, target)
        changes = params.changes()
        keys = list(changes)
        before = _pick_resources(container, keys)
        # A factor applied twice compounds, but only this step's own earlier write is a
        # repetition (``api.replayed`` above: a take-up after a crash). Another step of the
        # run, on another container or in on_failed after this one, is its own change.
        after: dict[str, Any] = {"container": params.container}
        patch_resources: dict[str, dict[str, str]] = {}
        held: dict[tuple[str, str], str] = {}  # why a factor left a field as it was, by field
        for (section, resource), change in changes.items():
            current = before[section][resource]
            if change.value is not None:
                new = change.value
            else:
                assert change.factor is not None
                assert change.max is not None
                if current is None:
                    raise ActionRefused(
                        f"container {params.container} of {object_ref(target)} has no {resource} "
                        f"{section[:-1]} to multiply by {change.factor}; give a value instead"
                    )
                scaled = quantity.scale(current, change.factor, change.max, resource=resource)
                new = scaled.value
                if scaled.held is not None:
                    held[(section, resource)] = scaled.held
                    after.setdefault(section, {})[resource] = current
                    continue  # never written: the live value stays as it is
            after.setdefault(section, {})[resource] = new
            patch_resources.setdefault(section, {})[resource] = new
        if over := quantity.request_over_limit(container.get("resources") or {}, patch_resources):
            raise ActionRefused(f"container {params.container} of {object_ref(target)}: {over}")

        def describe(s: str, r: str) -> str:
            if (s, r) in held:
                return f"{r} {s[:-1]} {before[s][r]} unchanged: {held[(s, r)]}"
            return f"{r} {s[:-1]} {before[s][r] or 'unset'} -> {after[s][r]}"

        if all(quantity.equal(before[s][r], after[s][r]) for s, r in keys):
            reasons = "; ".join(describe(s, r) for s, r in keys if (s, r) in held)
            message = reasons or f"container {params.container} already has these resources"
            return WritePlan.noop(
                Change(
                    f"{object_ref(target)} container {params.container}: {message}", before, before
                ),
                message,
            )
        template = template_edit(obj, {"name": params.container, "resources": patch_resources})
        summary = ", ".join(describe(s, r) for s, r in keys)
        # The values it replaces must still be these when it runs (an approved step is
        # refused otherwise: KubeAction.run compares them with the approved ones).
        planned = Change(
            f"{object_ref(target)} container {params.container}: {summary}{held_back(obj)}",
            before,
            after,
            preconditions=before,
        )
        # At plan time: a record over its cap is refused in the preview, before any approval.
        record = await api.template_record(target, obj, planned)
        return WritePlan(
            planned,
            lambda: api.patch_template(target, template, obj, record),
            lambda written: _pick_resources(
                find_container(written, params.container, target), keys
            ),
        )


# --------------------------------------------------------------------------------------------
# kubernetes.set_env


class SetEnvParams(ActionParams):
    """``container`` (a DNS-1123 label), ``name`` (Kubernetes' strict env var name rule) and
    the literal ``value``, which replaces a ``valueFrom`` reference of the same name (a name
    the container defines more than once is refused: ``objects.refuse_duplicate_env``).

    ``value`` may be up to 32,768 characters here, but the step's write record keeps it and
    the current value twice each within ``record_size.RECORD_CAP`` (16 KiB), escaping every
    non-ASCII character: about 7,900 bytes of ASCII replacing a short value is the most
    ``SetEnv.plan`` writes (a third to a half of that of other text); a longer one is refused
    there (RecordTooLarge, naming the variable, the sizes and the most that fits)."""

    container: str
    name: str = Field(min_length=1, max_length=253)
    value: str = Field(max_length=32768)

    @field_validator("container")
    @classmethod
    def _container(cls, name: str) -> str:
        return _container_name(name)

    @field_validator("name")
    @classmethod
    def _env_name(cls, name: str) -> str:
        errors = names.env_var_name_errors(name)
        if errors:
            raise ValueError(
                f"{name!r} is not a valid environment variable name: {'; '.join(errors)}"
            )
        return name

    def lint_warnings(self) -> tuple[str, ...]:
        """What lint says of these params, the rule still loading (``receiver.rules.steps``):
        a literal ``value`` whose write record could never fit, whatever the current value
        (it keeps the new value twice, escaped as JSON with every non-ASCII character as a
        ``\\u`` escape: over ``RECORD_CAP`` on that alone), so that every run would refuse
        the step. A value holding template markup is refused before this (``{{`` is never
        rendered here: ``remediations.params.literal_templates``)."""
        kept = 2 * len(json.dumps(self.value))
        if kept <= RECORD_CAP:
            return ()
        return (
            f"value ({len(self.value.encode()):,} bytes) can never be written: the step's "
            f"write record keeps it twice, escaped ({kept:,} bytes), over the cap of "
            f"{RECORD_CAP:,} bytes per record, so every run would refuse the step; shorten it "
            "(about 7,900 bytes of ASCII at most), or set such a value by hand (kubectl set env)",
        )


class SetEnv(KubeAction[SetEnvParams]):
    """Set one environment variable of one container (a new rollout follows). Refuses, before
    writing and in the preview, a paused Deployment (``objects.refuse_paused_edit``), a
    variable the container defines more than once
    (``objects.refuse_duplicate_env``), a value whose write record would pass its cap
    (RecordTooLarge) and a write that would leave too little annotation room
    (AnnotationsTooLarge, ``KubeApi.template_record``; on a Deployment it lists its
    ReplicaSets for that)."""

    name: ClassVar[str] = "kubernetes.set_env"
    Params: ClassVar[type[BaseModel]] = SetEnvParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset(WORKLOADS)

    def explain(self, target: Target, params: SetEnvParams) -> str:
        return f"set env {params.name} on container {params.container} of {object_ref(target)}"

    async def plan(self, api: KubeApi, target: Target, params: SetEnvParams) -> WritePlan:
        obj = await api.read_workload(target)
        replayed = api.replayed(obj)
        if replayed is not None:
            return replayed
        refuse_paused_edit(obj, target)
        container = find_container(obj, params.container, target)
        refuse_duplicate_env(container, params.name, target)

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
            return WritePlan.noop(
                Change(f"{params.name} is already set", before, before),
                f"{params.name} already has that value in {params.container}",
            )
        var: dict[str, Any] = {"name": params.name, "value": params.value}
        if "valueFrom" in before:
            var["valueFrom"] = None  # a literal value replaces the reference
        template = template_edit(obj, env_edit(container, var))
        change = Change(
            f"set {params.name} on container {params.container} of {object_ref(target)}"
            f"{held_back(obj)}",
            before,
            after,
            preconditions=before,
        )
        try:
            # At plan time: a record over its cap is refused in the preview, before any
            # approval, and never sent.
            record = await api.template_record(target, obj, change)
        except RecordTooLarge as exc:
            raise _env_too_large(exc, target, params, before) from None
        return WritePlan(
            change,
            lambda: api.patch_template(target, template, obj, record),
            lambda written: pick(find_container(written, params.container, target)),
        )


def _env_too_large(
    exc: RecordTooLarge, target: Target, params: SetEnvParams, before: Mapping[str, Any]
) -> RecordTooLarge:
    """``exc`` told in set_env's terms: which variable, the sizes of its new and current
    values (UTF-8 bytes), and the largest new value that would fit beside the current one, in
    UTF-8 bytes of text like the refused value (the record escapes non-ASCII characters, so
    the room in the record's bytes would overstate it 2 to 3 times for such text)."""
    old = before.get("value") if before.get("value") is not None else before.get("valueFrom")
    old_bytes = (
        len(old.encode())
        if isinstance(old, str)
        else 0
        if old is None
        else len(json.dumps(old, default=str).encode())  # a valueFrom reference
    )
    new_bytes = len(params.value.encode())
    # The record holds the new value twice (change.after, after) and the current one twice
    # (change.before, change.preconditions); the rest of it stays as it is.
    rest = exc.size - 2 * len(json.dumps(params.value))
    room = (exc.cap - rest) // 2 - 2  # less its quotes: bytes of the escaped value
    fits = fitting_bytes(room, params.value)
    mix = (
        ""
        if params.value.isascii()
        else f" of text like this one ({room:,} if it is ASCII: the record escapes every "
        "other character, taking 6 bytes for one of 2 or 3 UTF-8 bytes and 12 for an emoji)"
    )
    advice = (
        f"give {params.name} a value of at most about {fits:,} bytes{mix} in the rule's step, "
        "or set it by hand (kubectl set env)"
        if room > 0
        else f"its current value alone is too large to keep: set {params.name} by hand "
        "(kubectl set env)"
    )
    return RecordTooLarge(
        f"not written: setting {params.name} on container {params.container} of "
        f"{object_ref(target)} keeps its new value ({new_bytes:,} bytes) and its current value "
        f"({old_bytes:,} bytes) twice each in the step's write record (the annotation that lets "
        f"a retry and a restore read the change back): {exc.size:,} bytes, over the cap of "
        f"{exc.cap:,} bytes per record. Nothing was changed; {advice}",
        size=exc.size,
        cap=exc.cap,
        parts=exc.parts,
    )
