"""Compiling a rule's step lists (steps, on_resolved, on_failed): params checked against the
action's model, approval from its risk, the conditions of ``when``. Pure; errors go to
``Located`` at the offending key, as in ``receiver.rules.compile``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from receiver.facts import FactKind
from receiver.model import Announce, Approval
from receiver.rules.model import LiveCondition, Repeated, Step
from receiver.rules.schema import NotifySpec, ResolvedStepSpec, StepSpec, WhenSpec
from receiver.rules.yaml_lines import KeyPath, Located
from remediations.base import ParamsError, Registry, Risk

__all__ = ["check_params", "compile_announce", "compile_steps", "prefixed"]


def _where(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def prefixed(path: Sequence[str | int], message: str) -> str:
    """``message`` after the dotted path of the key it is about, when there is one."""
    where = _where(path)
    return f"{where}: {message}" if where else message


def check_params(
    spec: ResolvedStepSpec,
    path: KeyPath,
    registry: Registry,
    located: Located,
    label: str,
) -> Mapping[str, Any] | None:
    """The step's params as the action's model reads them (JSON-ready), or None with each
    fault added to ``located`` at its key."""
    try:
        params = registry.parse_params(spec.action, spec.params)
    except ParamsError as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            for item in cause.errors():
                sub = tuple(item["loc"])
                detail = prefixed(sub, item["msg"].removeprefix("Value error, "))
                message = f"{label}invalid params for {spec.action}: {detail}"
                located.add((*path, "params", *sub), message)
        else:
            located.add((*path, "params"), f"{label}{exc.message}")
        return None
    dumped = params.model_dump(mode="json")
    try:
        # The executor parses these again: params that do not survive the trip through JSON
        # would fail only at run time, so fail here instead.
        registry.parse_params(spec.action, dumped)
    except ParamsError as exc:
        located.add((*path, "params"), f"{label}params do not round-trip through JSON: {exc}")
        return None
    return dumped


def _needs_approval(approval: Approval, risk: Risk) -> bool:
    if approval is Approval.REQUIRED:
        return True
    if approval is Approval.NEVER:
        return False
    return risk == Risk.HIGH


def compile_steps(
    specs: Sequence[ResolvedStepSpec],
    path: KeyPath,
    kind: str,
    registry: Registry,
    located: Located,
    label: str,
) -> tuple[Step, ...] | None:
    steps: list[Step] = []
    ok = True
    for index, spec in enumerate(specs):
        step_path = (*path, index)
        action = registry.get(spec.action)  # known: the schema checked it
        if kind not in action.target_kinds:
            supported = ", ".join(sorted(action.target_kinds)) or "nothing"
            located.add(
                (*step_path, "action"),
                f"{label}{spec.action} cannot act on a {kind} (it acts on: {supported})",
            )
            ok = False
        params = check_params(spec, step_path, registry, located, label)
        if params is None:
            ok = False
            continue
        when = spec.when if isinstance(spec, StepSpec) else None
        conditions = _conditions(when)
        if conditions and kind != "Deployment":
            name = conditions[0].name
            located.add(
                (*step_path, "when", name),
                f"{label}when.{name} reads a Deployment's rollout history; the target is a {kind}",
            )
            ok = False
        steps.append(
            Step(
                index=index,
                action=spec.action,
                params=params,
                approval=spec.approval,
                needs_approval=_needs_approval(spec.approval, action.risk),
                repeated=(
                    Repeated(times=when.repeated.times, within_s=when.repeated.within)
                    if when is not None and when.repeated is not None
                    else None
                ),
                conditions=conditions,
            )
        )
    return tuple(steps) if ok else None


def _conditions(when: WhenSpec | None) -> tuple[LiveCondition, ...]:
    """The live conditions of a step's ``when`` (``repeated`` is not one: it reads history)."""
    if when is None:
        return ()
    unknown = when.or_release_unknown
    if when.rolled_out_within is not None:
        return (LiveCondition(FactKind.ROLLOUT, when.rolled_out_within, or_unknown=unknown),)
    if when.not_rolled_out_within is not None:
        within = when.not_rolled_out_within
        return (LiveCondition(FactKind.ROLLOUT, within, negate=True, or_unknown=unknown),)
    return ()


def compile_announce(spec: NotifySpec | None) -> Announce | None:
    return None if spec is None else Announce(spec.channel, frozenset(spec.events))
