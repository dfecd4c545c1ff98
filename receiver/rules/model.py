"""Compiled rules: what the engine works with. Pure data and matching, no I/O.

A ``RuleSet`` is built by ``receiver.rules.compile`` from validated specs; nothing here parses
or reads a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from receiver.durations import format_duration
from receiver.facts import FactKind, FactReading, can_roll_back, within
from receiver.matchers import Matcher, matches_all
from receiver.model import Announce, Approval, GuardSpec, NamespacePolicy, StepPlan
from receiver.rules.errors import RuleError
from receiver.templating import Template, render_target
from remediations.targets import Target

__all__ = [
    "Condition",
    "LiveCondition",
    "Repeated",
    "RollbackCondition",
    "Rule",
    "RuleSet",
    "Step",
]


@dataclass(frozen=True, slots=True)
class Repeated:
    """A step's ``when.repeated``: from the ``times``-th occurrence within ``within_s`` seconds."""

    times: int
    within_s: float


@dataclass(frozen=True, slots=True)
class LiveCondition:
    """A step's condition on a live fact about the target, e.g. ``rolled_out_within: 30m``
    (``negate``: ``not_rolled_out_within``): the newest release is (not) younger than
    ``within_s`` seconds when the plan is made. ``or_unknown`` (``or_release_unknown``): it
    also holds when the history cannot tell the release's age (``receiver.facts.Rollout``
    ``known`` false); without it such a step is left out. ``or_no_rollback``
    (``or_nothing_to_roll_back``): it also holds when ``kubernetes.rollout_undo`` has nothing
    to roll back to (``Rollout.no_rollback``: a new Deployment, a pruned history)."""

    fact: FactKind
    within_s: float
    negate: bool = False
    or_unknown: bool = False
    or_no_rollback: bool = False

    @property
    def name(self) -> str:
        """As written in the rule: ``rolled_out_within`` or ``not_rolled_out_within``."""
        return ("not_" if self.negate else "") + "rolled_out_within"

    def decide(self, reading: FactReading | None, now: datetime) -> tuple[bool | None, str]:
        """(holds, why) on ``reading`` (the target's rollout, None: not read) at ``now``; holds
        is None when it cannot be told, and the step is then left out: a rollback is never
        chosen on a guess (``facts.within``)."""
        written = f"{self.name} {format_duration(self.within_s)}"
        written += " or release unknown" if self.or_unknown else ""
        written += " or nothing to roll back" if self.or_no_rollback else ""
        if reading is None or reading.value is None:
            cause = "the rollout was not read" if reading is None else reading.error
            return None, f"{written}: cannot tell ({cause}); step left out"
        holds, why = within(
            reading.value,
            self.within_s,
            now,
            negate=self.negate,
            or_unknown=self.or_unknown,
            or_no_rollback=self.or_no_rollback,
        )
        return holds, f"{written}: {why}" + ("; step left out" if holds is None else "")


@dataclass(frozen=True, slots=True)
class RollbackCondition:
    """A step's ``can_roll_back: true|false``: ``kubernetes.rollout_undo`` (no
    ``to_revision``) has (``wanted``) or has not a revision to roll back to, as read with the
    target's rollout (``receiver.facts.can_roll_back``). A rollback step carries
    ``can_roll_back: true`` so that a Deployment with nothing to roll back to (a new one) gets
    the rule's other step rather than a rollback that refuses."""

    fact: FactKind
    wanted: bool = True

    @property
    def name(self) -> str:
        """As written in the rule."""
        return "can_roll_back"

    def decide(self, reading: FactReading | None, now: datetime) -> tuple[bool | None, str]:
        """(holds, why) on ``reading`` (None: not read); None when the rollout was not read.
        ``now`` is unused: whether there is something to roll back to does not age."""
        written = f"can_roll_back {'true' if self.wanted else 'false'}"
        if reading is None or reading.value is None:
            cause = "the rollout was not read" if reading is None else reading.error
            return None, f"{written}: cannot tell ({cause}); step left out"
        holds, why = can_roll_back(reading.value, self.wanted)
        return holds, f"{written}: {why}"


# A step's condition on a live fact: what ``engine.plan`` decides each with (``decide``).
Condition = LiveCondition | RollbackCondition


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a rule, its params already validated against the action's params model."""

    index: int
    action: str
    # ``model_dump(mode="json")`` of the validated params: plain data that the executor parses
    # again with the same model, and that can be hashed into an approval.
    params: Mapping[str, Any]
    approval: Approval
    needs_approval: bool
    repeated: Repeated | None = None
    conditions: tuple[Condition, ...] = ()

    def to_plan(self, description: str = "") -> StepPlan:
        """The step as planned for one run; its params are a copy of the rule's.
        ``description``: why it was planned (its conditions, as decided)."""
        # A fresh copy per plan: a consumer that mutates its params must not change the rule.
        return StepPlan(
            index=self.index,
            action=self.action,
            params=_deep_copy(self.params),
            needs_approval=self.needs_approval,
            description=description,
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule; ``file`` and ``line`` say where it is written. Durations in seconds."""

    name: str
    description: str
    file: str
    line: int
    matchers: tuple[Matcher, ...]
    target_kind: str
    target_namespace: Template
    target_name: Template
    steps: tuple[Step, ...]
    on_resolved: tuple[Step, ...] = ()
    verify_within_s: float | None = None
    cooldown_s: float | None = None
    max_runs: int | None = None
    max_runs_per_s: float | None = None
    # Verification: how long the alert must stay resolved; the escalation when it fails.
    settle_s: float | None = None
    on_failed: tuple[Step, ...] = ()
    # ``notify:``: where and which moments of its runs are announced; None: not announced.
    announce: Announce | None = None
    # What the properties below return, worked out once from the fields above: the engine
    # asks them for every event (a storm's thousands), and each was a walk over the steps.
    _guards: GuardSpec = field(init=False, repr=False, compare=False)
    _widest_window_s: float | None = field(init=False, repr=False, compare=False)
    _most_times: int | None = field(init=False, repr=False, compare=False)
    _facts: frozenset[FactKind] = field(init=False, repr=False, compare=False)
    _has_conditions: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        windows = [s.repeated.within_s for s in self.steps if s.repeated is not None]
        derived = {
            "_guards": GuardSpec(
                cooldown_s=self.cooldown_s,
                max_runs=self.max_runs,
                max_runs_per_s=self.max_runs_per_s,
            ),
            "_widest_window_s": max(windows) if windows else None,
            "_most_times": max(
                (s.repeated.times for s in self.steps if s.repeated is not None), default=None
            ),
            "_facts": frozenset(c.fact for s in self.steps for c in s.conditions),
            "_has_conditions": any(s.repeated is not None or s.conditions for s in self.steps),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when every matcher matches ``labels`` (a missing label reads as "")."""
        return matches_all(self.matchers, labels)

    def render_target(
        self, labels: Mapping[str, str], annotations: Mapping[str, str], policy: NamespacePolicy
    ) -> Target:
        """The validated target for one alert. Raises TemplateError or TargetError."""
        return render_target(
            self.target_kind,
            self.target_namespace,
            self.target_name,
            labels,
            annotations,
            policy,
        )

    @property
    def guards(self) -> GuardSpec:
        """The rule's own guards (cooldown, max runs per window)."""
        return self._guards

    @property
    def widest_window_s(self) -> float | None:
        """The longest ``repeated.within`` of any step: how far back history must reach."""
        return self._widest_window_s

    @property
    def most_times(self) -> int | None:
        """The highest ``repeated.times`` of any step (None when no step waits for a
        repetition): the engine counts earlier occurrences up to this many, since no step can
        tell more from fewer (``engine.recent_limit``)."""
        return self._most_times

    @property
    def facts(self) -> frozenset[FactKind]:
        """The live facts its steps' conditions read about the target (empty: none)."""
        return self._facts

    @property
    def has_conditions(self) -> bool:
        """Whether any step has a ``when``: then each plan records why it was chosen."""
        return self._has_conditions


def _pinned_alertname(rule: Rule) -> str | None:
    """The alertname a rule requires by equality, if any: no other alert can match it."""
    for matcher in rule.matchers:
        if matcher.name == "alertname" and matcher.op == "=":
            return matcher.value
    return None


class RuleSet:
    """An immutable, validated set of rules, in file order then position in the file.

    ``source`` maps each file to the sha256 of its content; ``warnings`` are the compiler's
    (RuleErrors with ``warning=True``). Raises ValueError on two rules of the same name (the
    compiler reports those as RuleErrors before it gets here).
    """

    __slots__ = (
        "_by_alertname",
        "_by_name",
        "_rules",
        "_source",
        "_unindexed",
        "_warnings",
        "_widest_window_s",
    )

    def __init__(
        self,
        rules: Iterable[Rule],
        source: Mapping[str, str],
        warnings: Iterable[RuleError] = (),
    ) -> None:
        self._rules = tuple(rules)
        self._source = dict(source)
        self._warnings = tuple(warnings)
        windows = [r.widest_window_s for r in self._rules if r.widest_window_s]
        self._widest_window_s = max(windows) if windows else None
        self._by_name: dict[str, Rule] = {}
        for rule in self._rules:
            if rule.name in self._by_name:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            self._by_name[rule.name] = rule
        # Every alert is matched at intake, so matching must not cost rules x matchers: a rule
        # with an alertname="X" matcher can only match alerts named X. Candidates keep file order.
        pinned = {rule.name: _pinned_alertname(rule) for rule in self._rules}
        self._unindexed = tuple(r for r in self._rules if pinned[r.name] is None)
        self._by_alertname: dict[str, tuple[Rule, ...]] = {
            name: tuple(r for r in self._rules if pinned[r.name] in (None, name))
            for name in {n for n in pinned.values() if n is not None}
        }

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule, in file order."""
        return self._rules

    @property
    def widest_window_s(self) -> float | None:
        """The longest ``repeated.within`` of any rule's steps (seconds; None when no step
        waits for a repetition): how far back the history of any event must reach."""
        return self._widest_window_s

    @property
    def warnings(self) -> tuple[RuleError, ...]:
        """What the compiler warned about, in file order: the rules load, but read them again."""
        return self._warnings

    @property
    def source(self) -> dict[str, str]:
        """File -> sha256 of its content. A copy: the set itself never changes."""
        return dict(self._source)

    @property
    def digest(self) -> str:
        """One sha256 over every file and its hash, to record which rule set made a plan."""
        lines = "".join(f"{name}\0{sha}\n" for name, sha in sorted(self._source.items()))
        return hashlib.sha256(lines.encode()).hexdigest()

    def _candidates(self, labels: Mapping[str, str]) -> tuple[Rule, ...]:
        # A missing label reads as "" for matchers, and so it does here.
        return self._by_alertname.get(labels.get("alertname", ""), self._unindexed)

    def matching(self, labels: Mapping[str, str]) -> list[Rule]:
        """The rules matching ``labels``, in file order."""
        return [rule for rule in self._candidates(labels) if rule.matches(labels)]

    def matches_any(self, labels: Mapping[str, str]) -> bool:
        """Whether any rule matches ``labels``; cheaper than ``matching`` when that is all."""
        return any(rule.matches(labels) for rule in self._candidates(labels))

    def by_name(self, name: str) -> Rule | None:
        """The rule called ``name``, or None."""
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self._rules)} rules from {len(self._source)} files)"


def _deep_copy(value: Any) -> Any:
    # Params are JSON-shaped (model_dump(mode="json")): dicts, lists and scalars only. A
    # plain dict or scalar is told by its type first: isinstance against the Mapping ABC is
    # slow, and every plan copies its steps' params.
    if type(value) in _SCALARS:
        return value
    if type(value) is dict or isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})
