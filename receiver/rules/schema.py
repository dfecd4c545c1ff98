"""What a rule file may say: the pydantic specs of one file's rules.

Values are checked here as far as they can be checked without the registry's params models;
durations arrive already converted to seconds. ``extra="forbid"`` everywhere, so a typo is an
error rather than a silently ignored key. Pure: no I/O.

When the validation context holds ``{"registry": Registry}``, action names are checked against
it as well.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from receiver.durations import MAX_DURATION_S, format_duration, parse_duration
from receiver.matchers import parse_item
from receiver.model import ANNOUNCEMENTS, Announcement, Approval
from receiver.templating import compile_template
from remediations import names
from remediations.base import Registry, UnknownAction
from remediations.params import Boolean, Integer

__all__ = [
    "FIELD_NAMES",
    "MAX_COUNT",
    "SPEC_FIELDS",
    "GuardsSpec",
    "MaxRunsSpec",
    "NotifySpec",
    "RepeatedSpec",
    "ResolvedStepSpec",
    "RuleSpec",
    "StepSpec",
    "TargetSpec",
    "VerifySpec",
    "WhenSpec",
]

# The largest count a rule may give (`max_runs.count`, `repeated.times`): far beyond any real
# rate, and small enough for Redis' Lua numbers and the store's integers.
MAX_COUNT = 1_000_000


def _duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than {format_duration(MAX_DURATION_S)} (a year)")
    return seconds


def _rule_name(value: str) -> str:
    # Names end up in metrics labels, URLs and guard keys: keep them DNS-1123-label shaped.
    if names.dns1123_label_errors(value):
        raise ValueError(
            f"rule name {value!r} must be lower-case letters, digits and '-', start and end "
            "with a letter or digit, at most 63 characters"
        )
    return value


def _matchers(value: str) -> str:
    # One item is a list of matchers (Alertmanager's compat.Matchers); warnings are the
    # compiler's business, errors are the schema's.
    if not parse_item(value).matchers:
        raise ValueError(
            f"{value!r} holds no matcher; an empty item would let the rule match every alert"
        )
    return value


def _matcher_not_mapping(value: object) -> object:
    # Alertmanager writes a matcher list in braces, `{alertname="X", severity="page"}`; unquoted
    # in YAML that is a flow mapping whose keys are the matchers (each with no value), and
    # pydantic's "Input should be a valid string" did not say what to do.
    if isinstance(value, dict):
        if all(v is None for v in value.values()) and all(isinstance(k, str) for k in value):
            text = "{" + ", ".join(value) + "}"
            quoted = "'" + text.replace("'", "''") + "'"
            raise ValueError(
                f"a matcher list in braces must be quoted in YAML ({quoted}): unquoted, YAML "
                "reads the braces as a mapping"
            )
        raise ValueError(
            "a matcher is text such as 'alertname=\"X\"' (quoted in YAML), not a mapping"
        )
    return value


def _template(value: str) -> str:
    compile_template(value)
    return value


def _known_action(value: str, info: ValidationInfo) -> str:
    registry = info.context.get("registry") if isinstance(info.context, dict) else None
    if isinstance(registry, Registry) and value not in registry:
        raise ValueError(str(UnknownAction(value, registry.names())))
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
MatcherText = Annotated[str, BeforeValidator(_matcher_not_mapping), AfterValidator(_matchers)]
TemplateText = Annotated[str, Field(min_length=1), AfterValidator(_template)]
ActionName = Annotated[str, AfterValidator(_known_action)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Spec):
    """``target:``: a kind and templates rendered from the alert. ``namespace`` only for kinds
    that live in one (Kubernetes); the compiler checks which."""

    kind: Annotated[str, Field(min_length=1)]
    namespace: TemplateText | None = None
    name: TemplateText


class RepeatedSpec(_Spec):
    """``when.repeated``: the step runs from the ``times``-th occurrence within ``within``."""

    times: Annotated[Integer, Field(ge=1, le=MAX_COUNT)]
    within: Duration


class WhenSpec(_Spec):
    """``when:`` of a step: every condition given must hold. ``repeated`` counts earlier
    occurrences; ``rolled_out_within`` / ``not_rolled_out_within`` (seconds) read the target
    Deployment's newest release just before the plan is made. ``or_release_unknown``: the
    rollout condition also holds when the Deployment's kept revisions cannot tell when its
    newest release was (its ReplicaSets pruned); without it the step is then left out.
    ``or_nothing_to_roll_back``: it also holds when ``kubernetes.rollout_undo`` would have
    nothing to roll back to (a new Deployment: its creation is its only release).
    ``can_roll_back`` (read with the rollout): ``kubernetes.rollout_undo`` has (``true``) or
    has not (``false``) a revision to roll back to."""

    repeated: RepeatedSpec | None = None
    rolled_out_within: Duration | None = None
    not_rolled_out_within: Duration | None = None
    or_release_unknown: Boolean = False
    or_nothing_to_roll_back: Boolean = False
    can_roll_back: Boolean | None = None

    @model_validator(mode="after")
    def _some_condition(self) -> WhenSpec:
        if self.repeated is None and not self._live() and self.can_roll_back is None:
            raise ValueError(
                "`when` needs a condition: repeated, rolled_out_within, not_rolled_out_within "
                "or can_roll_back"
            )
        if self.rolled_out_within is not None and self.not_rolled_out_within is not None:
            raise ValueError(
                "rolled_out_within and not_rolled_out_within on one step can never both hold; "
                "put them on two steps (one for each case)"
            )
        for flag in ("or_release_unknown", "or_nothing_to_roll_back"):
            if getattr(self, flag) and not self._live():
                raise ValueError(
                    f"{flag} qualifies rolled_out_within or not_rolled_out_within: "
                    "give one of them on the same step"
                )
        return self

    def _live(self) -> bool:
        return self.rolled_out_within is not None or self.not_rolled_out_within is not None


class ResolvedStepSpec(_Spec):
    """A step of ``on_resolved`` or ``on_failed``: it runs whenever the alert resolves (or its
    verification fails), so it takes no ``when``."""

    action: ActionName
    params: dict[str, Any] | None = None
    approval: Approval = Approval.AUTO


class StepSpec(ResolvedStepSpec):
    """A step of ``steps``."""

    when: WhenSpec | None = None


class VerifySpec(_Spec):
    """``verify:``: the alert must resolve within ``resolved_within`` seconds of the run's
    steps, and, with ``settle``, not fire again on the target for that long after resolving."""

    resolved_within: Duration
    settle: Duration | None = None


def _channel(value: str) -> str:
    if not names.is_connection_name(value):
        raise ValueError(
            f"{value!r} is not a channel name (a lowercase letter, then lowercase letters, "
            "digits or '_', at most 63)"
        )
    return value


class NotifySpec(_Spec):
    """``notify:`` of a rule: announce the run's moments (``events``, default all) to
    ``channel``. (Not ``on:``: YAML 1.1, which rule files are read as, makes that key a
    boolean.)"""

    channel: Annotated[str, AfterValidator(_channel)]
    events: Annotated[list[Announcement], Field(min_length=1)] = Field(
        default_factory=lambda: list(ANNOUNCEMENTS)
    )


class MaxRunsSpec(_Spec):
    """``guards.max_runs``: at most ``count`` runs per ``per`` seconds."""

    count: Annotated[Integer, Field(ge=1, le=MAX_COUNT)]
    per: Duration


class GuardsSpec(_Spec):
    """``guards:`` of a rule; durations in seconds."""

    cooldown: Duration | None = None
    max_runs: MaxRunsSpec | None = None


class RuleSpec(_Spec):
    """One item of ``rules:``."""

    name: Annotated[str, AfterValidator(_rule_name)]
    description: str = ""
    match: Annotated[list[MatcherText], Field(min_length=1)]
    target: TargetSpec
    steps: Annotated[list[StepSpec], Field(min_length=1)]
    verify: VerifySpec | None = None
    guards: GuardsSpec | None = None
    on_resolved: list[ResolvedStepSpec] | None = None
    on_failed: list[ResolvedStepSpec] | None = None
    notify: NotifySpec | None = None


_SPECS: tuple[type[_Spec], ...] = (
    RuleSpec,
    TargetSpec,
    StepSpec,
    WhenSpec,
    RepeatedSpec,
    VerifySpec,
    GuardsSpec,
    MaxRunsSpec,
    NotifySpec,
)

# Every key a rule file may hold, for "did you mean ...?" hints on unknown ones.
FIELD_NAMES = sorted({name for spec in _SPECS for name in spec.model_fields} | {"rules"})

# The fields of each part of a rule by its class's name, which pydantic's error for a part
# that is not a map names (``model_type``): the message names the fields instead.
_PARTS: tuple[type[_Spec], ...] = (*_SPECS, ResolvedStepSpec)
SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    spec.__name__: tuple(spec.model_fields) for spec in _PARTS
}
