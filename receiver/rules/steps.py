"""Compiling a rule's step lists (steps, on_resolved, on_failed): params checked against the
action's model, approval from its risk, the conditions of ``when``. Pure; errors go to
``Located`` at the offending key, as in ``receiver.rules.compile``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from receiver.facts import FactKind
from receiver.model import Announce, Approval
from receiver.rules.errors import RuleError, Shared
from receiver.rules.model import Condition, LiveCondition, Repeated, RollbackCondition, Step
from receiver.rules.schema import NotifySpec, ResolvedStepSpec, StepSpec, WhenSpec
from receiver.rules.yaml_lines import KeyPath, Located, dotted
from receiver.rules.yaml_loaders import boolean_word, yaml_1_1_value
from receiver.typos import typo_of
from remediations.base import ParamsError, Registry, Risk
from remediations.json_values import not_json
from remediations.params import literal_templates

__all__ = [
    "NOTIFY_ACTION",
    "ROLLBACK_ACTION",
    "check_channel",
    "check_params",
    "compile_announce",
    "compile_steps",
    "prefixed",
]

# The action that rolls a Deployment back, by name (the pure core does not import actions):
# it has nothing to roll back to on a new Deployment, which ``can_roll_back`` tells ahead.
ROLLBACK_ACTION = "kubernetes.rollout_undo"
# The action that sends to a channel of ``notify.channels``, named by its ``channel`` param.
NOTIFY_ACTION = "notify"


# Said of a param's text that holds template markup where nothing renders it.
NOT_A_TEMPLATE = (
    "is taken as written, not as a template: only notify's message and title and http.call's "
    "body render the alert's labels and annotations; write the value itself"
)


def prefixed(path: Sequence[str | int], message: str) -> str:
    """``message`` after the dotted path of the key it is about, when there is one."""
    where = dotted(path)
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
    faults = list(not_json(spec.params or {}))
    for sub, problem in faults:
        located.add(
            (*path, "params", *sub),
            f"{label}invalid params for {spec.action}: " + prefixed(sub, problem),
        )
    if faults:
        return None
    try:
        params = registry.parse_params(spec.action, spec.params)
    except ParamsError as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            for item in cause.errors():
                sub = tuple(item["loc"])
                word = boolean_word(located.words, (*path, "params", *sub), item)
                detail = prefixed(sub, word or item["msg"].removeprefix("Value error, "))
                if item["type"] == "extra_forbidden":
                    model = registry.get(spec.action).Params
                    detail = prefixed(sub[:-1], _unknown_param(sub[-1], _fields(model, sub[:-1])))
                message = f"{label}invalid params for {spec.action}: {detail}"
                located.add((*path, "params", *sub), message)
        else:
            located.add((*path, "params"), f"{label}{exc.message}")
        return None
    model = registry.get(spec.action).Params
    unread = False
    for where, written in located.numerals.items():
        sub = where[len(path) + 1 :]
        if where[: len(path) + 1] == (*path, "params") and _takes_any(model, sub):
            # Yesterday's number, the text now: sent where the number was, without a word.
            was = yaml_1_1_value(written)
            located.add(
                where,
                f"{label}invalid params for {spec.action}: "
                + prefixed(
                    sub,
                    f"YAML 1.1 read {written} as the number {was!r} and a rule file reads it"
                    f' as the text "{written}": quote it for the text, or write the number'
                    " as digits without a leading zero, `+` or `_` (0.5, not .5)",
                ),
            )
            unread = True
    for sub, text in literal_templates(params):
        located.add(
            (*path, "params", *sub),
            f"{label}invalid params for {spec.action}: "
            + prefixed(sub, f"{text!r} {NOT_A_TEMPLATE}"),
        )
        unread = True
    if unread:
        return None
    dumped = params.model_dump(mode="json")
    try:
        # The executor parses these again: params that do not survive the trip through JSON
        # would fail only at run time, so fail here instead.
        registry.parse_params(spec.action, dumped)
    except ParamsError as exc:
        located.add((*path, "params"), f"{label}params do not round-trip through JSON: {exc}")
        return None
    # An action's params may say what would fail every run though they are valid (a set_env
    # value too long for its write record): a warning, the rules still load.
    lint_warnings = getattr(params, "lint_warnings", None)
    if callable(lint_warnings):
        for message in lint_warnings():
            located.warn((*path, "params"), f"{label}{spec.action}: {message}")
    return dumped


def _unknown_param(key: object, known: Sequence[str] | None) -> str:
    """The message for a param ``key`` that the params at its place do not take (``known``,
    None when not found): the one it is a typo of (``typo_of``, as a settings key is told),
    else those it takes."""
    close = typo_of(str(key), known or ())
    if close is not None:
        return f"unknown param {str(key)!r} (did you mean {close!r}?)"
    if known is None:
        return f"unknown param {str(key)!r}"
    return f"unknown param {str(key)!r}; it takes " + (", ".join(known) or "none")


def _fields(model: type[BaseModel], path: Sequence[Any]) -> list[str] | None:
    """The params the part of ``model`` at ``path`` (a pydantic error's location: fields, and
    list indexes or map keys) takes; None where that part is not a model."""
    annotation = _annotation_at(model, path)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sorted(annotation.model_fields)
    return None


def _annotation_at(model: type[BaseModel], path: Sequence[Any]) -> Any:
    """The type of the part of ``model`` at ``path`` (fields, then list indexes or map keys):
    ``Any`` for anything inside a part typed ``Any``; None where ``path`` leads nowhere."""
    annotation: Any = model
    for part in path:
        if annotation is Any:
            return Any
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = _optional(field.annotation) if field is not None else None
        else:
            # A list's index or a map's key: the type of its items.
            items = typing.get_args(annotation)
            annotation = _optional(items[-1]) if items else None
    return annotation


def _takes_any(model: type[BaseModel], path: Sequence[Any]) -> bool:
    """Whether the part of ``model`` at ``path`` is typed ``Any``: a value is kept there as
    any JSON (``http.call``'s ``body``), the text ``017`` as readily as the number."""
    return _annotation_at(model, path) is Any


def _optional(annotation: Any) -> Any:
    """``X`` of ``X | None``; any other annotation as it is."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return args[0] if union and len(args) == 1 else annotation


def _needs_approval(approval: Approval, risk: Risk) -> bool:
    if approval is Approval.REQUIRED:
        return True
    if approval is Approval.NEVER:
        return False
    return risk == Risk.HIGH


# What a notify channel that no configuration has says, at each field that names one; said
# once for them all in the service's log (``errors.logged``).
NO_CHANNELS = (
    "no notify channels are configured (notify.channels), so messages to {} are recorded as "
    "undelivered"
)


def check_channel(
    name: str,
    path: KeyPath,
    channels: Collection[str] | None,
    located: Located,
    label: str,
    *,
    rule: str,
) -> bool:
    """Whether the channel ``name``, written at ``path`` (a rule's ``notify.channel`` or a
    ``notify`` step's ``params.channel``) of rule ``rule``, is one of the configured
    ``channels``.

    ``channels`` None: no configuration at hand (``remediator lint`` of bare files, a rule
    test): not checked. Empty: the configuration sets up no channel at all (the quickstart, the
    base deployment before its overlay): a warning (``NO_CHANNELS``, shared by every such
    field), since every such message is recorded as undelivered. Otherwise a name that is not
    there is an error: messages to it would be lost while the run succeeds."""
    if channels is None or name in channels:
        return True
    where = f"{label}{dotted(path[2:])}: "
    if not channels:
        message = f"{where}{NO_CHANNELS.format(repr(name))}"
        said = Shared(NO_CHANNELS, repr(name), rule)
        line = located.line_of(path)
        located.warnings.append(RuleError(located.file, line, message, warning=True, shared=said))
        return True
    known = ", ".join(sorted(channels))
    located.add(
        path, f"{where}no notify channel named {name!r} is configured (notify.channels: {known})"
    )
    return False


def compile_steps(
    specs: Sequence[ResolvedStepSpec],
    path: KeyPath,
    kind: str,
    registry: Registry,
    located: Located,
    label: str,
    channels: Collection[str] | None = None,
    *,
    rule: str,
) -> tuple[Step, ...] | None:
    """The steps of one list (``path``: the rule's, then ``steps``, ``on_resolved`` or
    ``on_failed``) of rule ``rule``, or None with each fault added to ``located``;
    ``channels``: the configured notify channels a ``notify`` step may name
    (``check_channel``)."""
    steps: list[Step] = []
    ok = _rollback_chosen_right(specs, path, located, label)
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
        channel_path = (*step_path, "params", "channel")
        if spec.action == NOTIFY_ACTION and not check_channel(
            str(params["channel"]), channel_path, channels, located, label, rule=rule
        ):
            ok = False
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


def _conditions(when: WhenSpec | None) -> tuple[Condition, ...]:
    """The live conditions of a step's ``when`` (``repeated`` is not one: it reads history)."""
    if when is None:
        return ()
    unknown, nothing = when.or_release_unknown, when.or_nothing_to_roll_back
    conditions: list[Condition] = []
    if when.rolled_out_within is not None:
        within = when.rolled_out_within
        conditions.append(
            LiveCondition(FactKind.ROLLOUT, within, or_unknown=unknown, or_no_rollback=nothing)
        )
    if when.not_rolled_out_within is not None:
        within = when.not_rolled_out_within
        conditions.append(
            LiveCondition(
                FactKind.ROLLOUT, within, negate=True, or_unknown=unknown, or_no_rollback=nothing
            )
        )
    if when.can_roll_back is not None:
        conditions.append(RollbackCondition(FactKind.ROLLOUT, when.can_roll_back))
    return tuple(conditions)


def _rollback_chosen_right(
    specs: Sequence[ResolvedStepSpec], path: KeyPath, located: Located, label: str
) -> bool:
    """Whether a rollback in ``specs`` is planned only when it has something to roll back to,
    wherever the rule says what to do when it has not; each fault added to ``located``.

    A ``kubernetes.rollout_undo`` step with ``or_nothing_to_roll_back`` or ``can_roll_back:
    false`` would be planned exactly when it refuses. And once a step of the rule says
    ``or_nothing_to_roll_back`` (it runs when there is nothing to roll back to), a rollback
    step without ``can_roll_back: true`` would be planned beside it then, and refuse."""
    ok = True
    whens = [s.when if isinstance(s, StepSpec) else None for s in specs]
    otherwise = [i for i, w in enumerate(whens) if w is not None and w.or_nothing_to_roll_back]
    for index, (spec, when) in enumerate(zip(specs, whens, strict=True)):
        if spec.action != ROLLBACK_ACTION:
            continue
        step = f"{path[-1]}[{index}]"
        where = (*path, index, "when")
        if when is not None and (when.or_nothing_to_roll_back or when.can_roll_back is False):
            key = "or_nothing_to_roll_back" if when.or_nothing_to_roll_back else "can_roll_back"
            located.add(
                (*where, key),
                f"{label}{step}.when.{key} plans {ROLLBACK_ACTION} exactly when it has nothing "
                "to roll back to, where it refuses: give the rollback `can_roll_back: true`, "
                "and `or_nothing_to_roll_back: true` to the step for the other case",
            )
            ok = False
        elif otherwise and (when is None or when.can_roll_back is not True):
            others = ", ".join(f"{path[-1]}[{i}]" for i in otherwise)
            located.add(
                where if when is not None else (*path, index, "action"),
                f"{label}{step} ({ROLLBACK_ACTION}) would also be planned when there is nothing "
                f"to roll back to, beside {others} (or_nothing_to_roll_back: true), and refuse, "
                f"which stops the run: add `can_roll_back: true` to {step}.when",
            )
            ok = False
    return ok


def compile_announce(spec: NotifySpec | None) -> Announce | None:
    return None if spec is None else Announce(spec.channel, frozenset(spec.events))
