"""What a rule test file may say: the pydantic specs of one file. Pure: no I/O.

A file names the rule files it tests and holds tests; a test declares its alerts, plays a
timeline of notifications and operator actions at offsets from the simulated start, and states
what must have happened at given offsets (``expect``). ``extra="forbid"`` everywhere, so a typo
is an error, not an assertion silently skipped. Offsets and durations use the rule files'
notation (``30s``, ``15m``, ``1h30m``); ``0`` is the start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from receiver.guards.policy import GuardSettings
from receiver.model import NamespacePolicy
from receiver.ruletest.fields import (
    STEP_OUTCOMES,
    ActionOutcomeName,
    AlertLabels,
    AnnouncementName,
    ApprovalStateName,
    Duration,
    GuardName,
    Handles,
    Offset,
    RawTime,
    RunOutcomeName,
    SignedTime,
    StepOutcomeName,
    TargetKey,
    VerifyResultName,
    offset_seconds,
    start_time,
)
from remediations.params import Boolean, Integer

__all__ = [
    "ACTION_KINDS",
    "DEFAULT_START",
    "NOTIFICATION_KINDS",
    "STEP_OUTCOMES",
    "AlertSpec",
    "ApprovalExpect",
    "DecisionSpec",
    "EntrySpec",
    "ExpectSpec",
    "FactsSpec",
    "FixtureSpec",
    "RolloutFact",
    "RuleFiles",
    "RunExpect",
    "SettingsSpec",
    "SkipExpect",
    "StepExpect",
    "TestFileSpec",
    "TestSpec",
    "offset_seconds",
]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)

# What a timeline entry may do: send a notification, or act as an operator, or change a fixture.
NOTIFICATION_KINDS = ("firing", "resolved", "repeat", "ha_duplicate", "refire")
ACTION_KINDS = ("pause", "resume", "approve", "reject", "fixtures")


# The service's defaults, read from their one home (a test file that says nothing gets them).
_GUARDS = GuardSettings()
_NAMESPACES = NamespacePolicy()


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- settings --------------------------------------------------------------------------------


class NamespacesSpec(_Spec):
    allow: list[str] = []
    deny: list[str] = list(_NAMESPACES.deny)


class BudgetSpec(_Spec):
    count: Annotated[Integer, Field(ge=0)] = _GUARDS.budget_count
    window: Duration = _GUARDS.budget_window_s


class BreakerSpec(_Spec):
    failures: Annotated[Integer, Field(ge=1)] = _GUARDS.breaker_failures
    window: Duration = _GUARDS.breaker_window_s
    open_for: Duration = _GUARDS.breaker_open_for_s


class SettingsSpec(_Spec):
    """The service configuration the rules are tested under; defaults are the service's.
    ``start``: the simulated time at offset 0 (an RFC 3339 time with its zone)."""

    start: datetime | None = None
    namespaces: NamespacesSpec | None = None
    budget: BudgetSpec | None = None
    breaker: BreakerSpec | None = None
    lock_ttl: Duration | None = None
    approval_ttl: Duration | None = None
    late_delivery_window: Duration | None = None

    # A field validator, not a model one: it is reported with the other errors of the file
    # (a model validator runs only once every field is valid), at the line of `start`.
    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return start_time(value)


# -- alerts and fixtures ---------------------------------------------------------------------


class AlertSpec(_Spec):
    """One alert a test sends, by the name the timeline uses for it."""

    labels: AlertLabels
    annotations: dict[str, str] = {}
    generator_url: str = ""


class StepScript(_Spec):
    """How a simulated step of one action ends on the fixture's target."""

    outcome: ActionOutcomeName
    message: str = ""


class RolloutFact(_Spec):
    """Fact ``rollout`` (``when: {rolled_out_within: ...}``): the Deployment's newest release
    as the probe reads it: its number, its ReplicaSet (default ``<name>-<revision>``) and when
    it was created (an RFC 3339 time, or an offset from the start, negative for before it).
    ``known: false``: the Deployment's kept revisions cannot tell its newest release (the
    ReplicaSet before ``revision`` is gone); ``bounded: false``: ``revision``'s ReplicaSet was
    rolled back to, so ``created_at`` bounds nothing (``receiver.facts.Rollout``).
    ``nothing_to_roll_back``: why ``rollout_undo`` has nothing to roll back to (implied for
    revision 1 and ``known: false``). ``error``: the probe could not read it, and why."""

    revision: Annotated[Integer, Field(ge=1)] | None = None
    replicaset: str | None = None
    created_at: SignedTime | None = None
    known: Boolean = True
    bounded: Boolean = True
    nothing_to_roll_back: Annotated[str, Field(min_length=1)] | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _read_or_not(self) -> RolloutFact:
        read = self.revision is not None and self.created_at is not None
        if self.error is None and not read:
            raise ValueError("give revision and created_at, or the error the probe met")
        if self.error is not None and (
            self.revision is not None
            or self.created_at is not None
            or self.nothing_to_roll_back is not None
            or not (self.known and self.bounded)
        ):
            raise ValueError("a fact that could not be read has an error and nothing else")
        if self.known and not self.bounded:
            raise ValueError("bounded: false only describes a release not known (known: false)")
        return self


class FactsSpec(_Spec):
    """The live facts of a target, one field per kind of fact (``receiver.facts.FactKind``)."""

    rollout: RolloutFact | None = None


class FixtureSpec(_Spec):
    """Live state of one target, from the entry's time on: ``facts`` (what rules' conditions
    read) and ``steps`` (how a simulated step of an action ends, by action name)."""

    target: TargetKey
    facts: FactsSpec = FactsSpec()
    steps: dict[str, StepScript] = {}


# -- the timeline ----------------------------------------------------------------------------


class PauseSpec(_Spec):
    reason: Annotated[str, Field(min_length=1)]
    for_: Annotated[Duration | None, Field(alias="for")] = None


class DecisionSpec(_Spec):
    """Approve or reject one approval, as ``by``: the one the selectors pick (the pending one
    when there is only one). ``fails``: the decision must be refused, with a message holding
    this text (e.g. ``expired``)."""

    rule: str | None = None
    alert: str | None = None
    action: str | None = None
    by: Annotated[str, Field(min_length=1)] = "tester"
    reason: str | None = None
    fails: str | None = None


def _decision(value: Any) -> Any:
    return {} if value is None or value is True else value


class EntrySpec(_Spec):
    """One thing that happens at ``at``: exactly one of the notification kinds (each names one
    alert, or a list sent in one notification) or operator actions."""

    at: Offset
    firing: Handles | None = None
    resolved: Handles | None = None
    repeat: Handles | None = None
    ha_duplicate: Handles | None = None
    refire: Handles | None = None
    pause: PauseSpec | None = None
    resume: Literal[True] | None = None
    approve: Annotated[DecisionSpec | None, BeforeValidator(_decision)] = None
    reject: Annotated[DecisionSpec | None, BeforeValidator(_decision)] = None
    fixtures: list[FixtureSpec] | None = None
    # Raw times of the notification (RFC 3339, or an offset): as Alertmanager would send them.
    starts_at: RawTime | None = None
    ends_at: RawTime | None = None
    # ha_duplicate: which notification of the alert the copy is of (default: its latest).
    of: Literal["firing", "resolved"] | None = None

    @property
    def kind(self) -> str:
        return next(k for k in (*NOTIFICATION_KINDS, *ACTION_KINDS) if getattr(self, k) is not None)

    @model_validator(mode="after")
    def _exactly_one(self) -> EntrySpec:
        given = [k for k in (*NOTIFICATION_KINDS, *ACTION_KINDS) if getattr(self, k) is not None]
        if len(given) != 1:
            found = f" (found {', '.join(given)})" if given else ""
            kinds = ", ".join((*NOTIFICATION_KINDS, *ACTION_KINDS))
            raise ValueError(f"give exactly one of {kinds}{found}")
        notification = given[0] in NOTIFICATION_KINDS
        if not notification and (self.starts_at is not None or self.ends_at is not None):
            raise ValueError("starts_at and ends_at belong to notifications")
        if self.of is not None and given[0] != "ha_duplicate":
            raise ValueError("`of` belongs to ha_duplicate")
        return self


# -- expectations ----------------------------------------------------------------------------


def _step_shorthand(value: Any) -> Any:
    # `- kubernetes.scale: simulated` is `- {action: kubernetes.scale, outcome: simulated}`.
    fields = {"action", "outcome", "message"}
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) not in fields:
        action, outcome = next(iter(value.items()))
        return {"action": action, "outcome": outcome}
    if isinstance(value, str):
        return {"action": value}
    return value


class StepExpect(_Spec):
    """One step of a run, in order: its action, and if given its outcome and a piece of its
    message."""

    action: Annotated[str, Field(min_length=1)]
    outcome: StepOutcomeName | None = None
    message: str | None = None


StepItem = Annotated[StepExpect, BeforeValidator(_step_shorthand)]


class RunExpect(_Spec):
    """One run, in the order runs were created; only what is given is checked.
    ``refused_by``: the guard that refused it (its outcome is then ``refused``); ``reason``: a
    piece of why it ended so (the refusal's reason or the run's error); ``verify_result``: how
    its verification ended; ``steps``, ``on_resolved``, ``on_failed``: its steps of each phase;
    ``announced``: the moments announced (the rule's ``notify``), in order."""

    rule: str | None = None
    target: TargetKey | None = None
    alert: str | None = None
    outcome: RunOutcomeName | None = None
    refused_by: GuardName | None = None
    reason: str | None = None
    verify_result: VerifyResultName | None = None
    steps: list[StepItem] | None = None
    on_resolved: list[StepItem] | None = None
    on_failed: list[StepItem] | None = None
    announced: list[AnnouncementName] | None = None


class ApprovalExpect(_Spec):
    """One approval that was asked for, in the order they were asked for."""

    rule: str | None = None
    alert: str | None = None
    action: str | None = None
    state: ApprovalStateName | None = None
    by: str | None = None


class SkipExpect(_Spec):
    """Why an alert led to nothing (or a rule to nothing for it): a skip the engine recorded
    on one of its events, or "no rule matches" from intake. ``reason``: a piece of it."""

    alert: Annotated[str, Field(min_length=1)]
    rule: str | None = None
    reason: Annotated[str, Field(min_length=1)]


class ExpectSpec(_Spec):
    """What must hold at ``at`` (after everything due then was processed), or at the end of
    the test when ``at`` is left out. ``runs`` and ``approvals`` are the complete lists;
    ``skips`` must each have been recorded (others may have been too)."""

    at: Offset | None = None
    runs: list[RunExpect] | None = None
    no_runs: Literal[True] | None = None
    approvals: list[ApprovalExpect] | None = None
    skips: list[SkipExpect] | None = None

    @model_validator(mode="after")
    def _something(self) -> ExpectSpec:
        given = (self.runs, self.no_runs, self.approvals, self.skips)
        if all(item is None for item in given):
            raise ValueError("expect what? give runs, no_runs, approvals or skips")
        if self.runs is not None and self.no_runs is not None:
            raise ValueError("give runs or no_runs, not both")
        return self


# -- tests and the file ----------------------------------------------------------------------


class TestSpec(_Spec):
    """One test: its alerts, its timeline, its expectations."""

    __test__ = False  # not a pytest class

    name: Annotated[str, Field(min_length=1)]
    settings: SettingsSpec | None = None
    alerts: Annotated[dict[str, AlertSpec], Field(min_length=1)]
    fixtures: list[FixtureSpec] = []
    timeline: Annotated[list[EntrySpec], Field(min_length=1)]
    expect: Annotated[list[ExpectSpec], Field(min_length=1)]


# The rule files under test, relative to the test file (read even when the rest is invalid).
RuleFiles = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class TestFileSpec(_Spec):
    """A rule test file: the rule files under test (paths relative to this file)."""

    __test__ = False

    rule_files: RuleFiles
    settings: SettingsSpec | None = None
    tests: Annotated[list[TestSpec], Field(min_length=1)]


SPECS: tuple[type[_Spec], ...] = (
    TestFileSpec,
    TestSpec,
    SettingsSpec,
    NamespacesSpec,
    BudgetSpec,
    BreakerSpec,
    AlertSpec,
    FixtureSpec,
    FactsSpec,
    RolloutFact,
    StepScript,
    EntrySpec,
    PauseSpec,
    DecisionSpec,
    ExpectSpec,
    RunExpect,
    StepExpect,
    ApprovalExpect,
    SkipExpect,
)

# Every key a test file may hold, for "did you mean ...?" hints on unknown ones.
FIELD_NAMES = sorted({(f.alias or name) for spec in SPECS for name, f in spec.model_fields.items()})
