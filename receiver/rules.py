"""Rule files: schema, compilation into matchable rules, and the loader that reports every error.

A rule file is YAML (``rules/README.md`` is the reference). Loading is two passes per rule:
the pydantic schema (``extra="forbid"``, so a typo is an error, not a silently ignored key),
then the checks that need the action registry and the namespace policy (params models,
target kinds, literal namespaces). Every error carries the file and line of the offending key
or item, and all of them are collected, so ``remediator lint`` shows the whole list at once.

Everything here is pure except ``_read_directory``, the one place that touches the disk.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import ErrorDetails

from receiver.durations import parse_duration
from receiver.matchers import Matcher, matches_all, parse_matcher
from receiver.model import Approval, GuardSpec, NamespacePolicy, StepPlan
from receiver.templating import (
    TargetError,
    Template,
    compile_template,
    render_target,
    validate_target,
)
from remediations.base import ParamsError, Registry, Risk, UnknownAction
from remediations.targets import Target

__all__ = [
    "Repeated",
    "Rule",
    "RuleError",
    "RuleHolder",
    "RuleSet",
    "RuleSetError",
    "Step",
    "compile_files",
    "lint",
    "lint_files",
    "load_rules",
]

# Where a value sits in a rule file: keys and list indexes from the top of the document.
KeyPath = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True, slots=True, order=True)
class RuleError:
    """One problem in the rule files. ``line`` is 1-based; 0 means the whole file or directory."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        if self.line > 0:
            return f"{self.file}:{self.line}: {self.message}"
        return f"{self.file}: {self.message}"


class RuleSetError(Exception):
    """The rule files are invalid; ``errors`` lists every problem found, in file order."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


# --------------------------------------------------------------------------------------------
# Schema: what a rule file may say. Values are checked here as far as they can be checked
# without the registry's params models; durations arrive already converted to seconds.

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    return seconds


def _rule_name(value: str) -> str:
    # Names end up in metrics labels, URLs and guard keys: keep them DNS-1123-label shaped.
    if len(value) > 63 or not _NAME.fullmatch(value):
        raise ValueError(
            f"rule name {value!r} must be lower-case letters, digits and '-', start and end "
            "with a letter or digit, at most 63 characters"
        )
    return value


def _matcher(value: str) -> str:
    parse_matcher(value)
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
MatcherText = Annotated[str, AfterValidator(_matcher)]
TemplateText = Annotated[str, Field(min_length=1), AfterValidator(_template)]
ActionName = Annotated[str, AfterValidator(_known_action)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Spec):
    kind: Annotated[str, Field(min_length=1)]
    namespace: TemplateText
    name: TemplateText


class RepeatedSpec(_Spec):
    times: Annotated[int, Field(ge=1)]
    within: Duration


class WhenSpec(_Spec):
    repeated: RepeatedSpec


class ResolvedStepSpec(_Spec):
    action: ActionName
    params: dict[str, Any] | None = None
    approval: Approval = Approval.AUTO


class StepSpec(ResolvedStepSpec):
    when: WhenSpec | None = None


class VerifySpec(_Spec):
    resolved_within: Duration


class MaxRunsSpec(_Spec):
    count: Annotated[int, Field(ge=1)]
    per: Duration


class GuardsSpec(_Spec):
    cooldown: Duration | None = None
    max_runs: MaxRunsSpec | None = None


class RuleSpec(_Spec):
    name: Annotated[str, AfterValidator(_rule_name)]
    description: str = ""
    match: Annotated[list[MatcherText], Field(min_length=1)]
    target: TargetSpec
    steps: Annotated[list[StepSpec], Field(min_length=1)]
    verify: VerifySpec | None = None
    guards: GuardsSpec | None = None
    on_resolved: list[ResolvedStepSpec] | None = None


_SPECS: tuple[type[_Spec], ...] = (
    RuleSpec,
    TargetSpec,
    StepSpec,
    WhenSpec,
    RepeatedSpec,
    VerifySpec,
    GuardsSpec,
    MaxRunsSpec,
)
_FIELD_NAMES = sorted({name for spec in _SPECS for name in spec.model_fields} | {"rules"})


# --------------------------------------------------------------------------------------------
# Compiled rules: what the engine works with.


@dataclass(frozen=True, slots=True)
class Repeated:
    times: int
    within_s: float


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

    def to_plan(self) -> StepPlan:
        # A fresh copy per plan: a consumer that mutates its params must not change the rule.
        return StepPlan(
            index=self.index,
            action=self.action,
            params=_deep_copy(self.params),
            needs_approval=self.needs_approval,
        )


@dataclass(frozen=True, slots=True)
class Rule:
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

    def matches(self, labels: Mapping[str, str]) -> bool:
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
        return GuardSpec(
            cooldown_s=self.cooldown_s,
            max_runs=self.max_runs,
            max_runs_per_s=self.max_runs_per_s,
        )

    @property
    def widest_window_s(self) -> float | None:
        """The longest ``repeated.within`` of any step: how far back history must reach."""
        windows = [s.repeated.within_s for s in self.steps if s.repeated is not None]
        return max(windows) if windows else None


def _pinned_alertname(rule: Rule) -> str | None:
    """The alertname a rule requires by equality, if any: no other alert can match it."""
    for matcher in rule.matchers:
        if matcher.name == "alertname" and matcher.op == "=":
            return matcher.value
    return None


class RuleSet:
    """An immutable, validated set of rules, in file order then position in the file."""

    __slots__ = ("_by_alertname", "_by_name", "_rules", "_source", "_unindexed")

    def __init__(self, rules: Iterable[Rule], source: Mapping[str, str]) -> None:
        self._rules = tuple(rules)
        self._source = dict(source)
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
        return self._rules

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
        return [rule for rule in self._candidates(labels) if rule.matches(labels)]

    def matches_any(self, labels: Mapping[str, str]) -> bool:
        return any(rule.matches(labels) for rule in self._candidates(labels))

    def by_name(self, name: str) -> Rule | None:
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self._rules)} rules from {len(self._source)} files)"


# --------------------------------------------------------------------------------------------
# YAML with line numbers. PyYAML's constructed objects forget where they came from, so the
# node tree is walked by hand and the line of every key and item is kept by its path.


@dataclass(slots=True)
class _Located:
    """Errors of one file, and a path -> line index to place them."""

    file: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    errors: list[RuleError] = field(default_factory=list)

    def line_of(self, path: Sequence[str | int]) -> int:
        # The deepest recorded ancestor: a missing key is reported on its parent's line.
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1

    def add(self, path: Sequence[str | int], message: str) -> None:
        self.errors.append(RuleError(self.file, self.line_of(path), message))


def _parse_yaml(text: str, located: _Located) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        return _construct(loader, node, (), located, set())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = ": ".join(p for p in (exc.context, exc.problem) if p)
        located.errors.append(RuleError(located.file, line, f"invalid YAML: {problem}"))
        return None
    except yaml.YAMLError as exc:
        located.errors.append(RuleError(located.file, 1, f"invalid YAML: {exc}"))
        return None
    finally:
        loader.dispose()


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: KeyPath,
    located: _Located,
    active: set[int],
) -> Any:
    located.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_object(node)
    if id(node) in active:
        # An alias pointing at its own ancestor would make the walk (and the rule) infinite.
        located.add(path, "recursive YAML alias")
        return None
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                located.lines.setdefault((*path, index), item.start_mark.line + 1)
                items.append(_construct(loader, item, (*path, index), located, active))
            return items
        if isinstance(node, yaml.MappingNode):
            # Keys written here, as opposed to keys pulled in by a `<<: *anchor` merge, which
            # they may override; only two written keys of the same name are a mistake.
            written = {id(key) for key, _ in node.value}
            loader.flatten_mapping(node)
            out: dict[str, Any] = {}
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                key = (
                    loader.construct_object(key_node)
                    if isinstance(key_node, yaml.ScalarNode)
                    else None
                )
                if not isinstance(key, str):
                    # YAML 1.1 reads `on:` or `yes:` as booleans; say so rather than guess.
                    located.errors.append(
                        RuleError(located.file, key_line, f"keys must be strings, not {key!r}")
                    )
                    continue
                if key in first_line and id(key_node) in written:
                    located.errors.append(
                        RuleError(
                            located.file,
                            key_line,
                            f"duplicate key {key!r} (first at line {first_line[key]})",
                        )
                    )
                    continue
                if id(key_node) in written:
                    first_line[key] = key_line
                located.lines[(*path, key)] = key_line
                out[key] = _construct(loader, value_node, (*path, key), located, active)
            return out
        return loader.construct_object(node)
    finally:
        active.discard(id(node))


# --------------------------------------------------------------------------------------------
# Compilation


def _where(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _schema_message(error: ErrorDetails) -> tuple[tuple[str | int, ...], str]:
    """(path of the offending item, operator-facing message) for one pydantic error."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if key == "when" and "on_resolved" in loc:
            return loc, "on_resolved steps take no `when`: they run whenever the alert resolves"
        hint = difflib.get_close_matches(key, _FIELD_NAMES, n=1, cutoff=0.75)
        suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        return loc, _prefixed(loc[:-1], f"unknown field {key!r}{suffix}")
    if kind == "missing":
        return loc, _prefixed(loc[:-1], f"missing required field {str(loc[-1])!r}")
    if kind == "too_short" and loc and loc[-1] == "match":
        return loc, "match must list at least one matcher; an empty list would match every alert"
    if kind == "too_short" and loc and loc[-1] == "steps":
        return loc, "steps must list at least one step"
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    return loc, _prefixed(loc, message)


def _prefixed(path: Sequence[str | int], message: str) -> str:
    where = _where(path)
    return f"{where}: {message}" if where else message


def _check_params(
    spec: ResolvedStepSpec,
    path: KeyPath,
    registry: Registry,
    located: _Located,
    label: str,
) -> Mapping[str, Any] | None:
    try:
        params = registry.parse_params(spec.action, spec.params)
    except ParamsError as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            for item in cause.errors():
                sub = tuple(item["loc"])
                detail = _prefixed(sub, item["msg"].removeprefix("Value error, "))
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


def _compile_steps(
    specs: Sequence[ResolvedStepSpec],
    path: KeyPath,
    kind: str,
    registry: Registry,
    located: _Located,
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
        params = _check_params(spec, step_path, registry, located, label)
        if params is None:
            ok = False
            continue
        when = spec.when if isinstance(spec, StepSpec) else None
        steps.append(
            Step(
                index=index,
                action=spec.action,
                params=params,
                approval=spec.approval,
                needs_approval=_needs_approval(spec.approval, action.risk),
                repeated=(
                    Repeated(times=when.repeated.times, within_s=when.repeated.within)
                    if when is not None
                    else None
                ),
            )
        )
    return tuple(steps) if ok else None


def _check_literal_target(
    spec: TargetSpec,
    namespace: Template,
    name: Template,
    path: KeyPath,
    policy: NamespacePolicy,
    located: _Located,
    label: str,
) -> bool:
    """A part of the target without templates is known now: refuse it now, not on the first
    alert. Templated parts are stood in for by a valid placeholder and checked at render time."""
    literal_ns = None if namespace.references else namespace.render({}, {})
    literal_name = None if name.references else name.render({}, {})
    if literal_ns is None and literal_name is None:
        return True
    probe = Target(spec.kind, literal_ns or "placeholder", literal_name or "placeholder")
    # The policy only speaks about namespaces; with a templated one, check the name alone.
    probe_policy = policy if literal_ns is not None else NamespacePolicy(allow=(), deny=())
    try:
        validate_target(probe, probe_policy)
    except TargetError as exc:
        located.add((*path, exc.field), f"{label}target.{exc.field}: {exc}")
        return False
    return True


def _compile_rule(
    raw: Any,
    path: KeyPath,
    registry: Registry,
    policy: NamespacePolicy,
    located: _Located,
) -> Rule | None:
    if not isinstance(raw, dict):
        located.add(path, "each item of `rules` must be a mapping with name, match, target, steps")
        return None
    # Naming the rule in each message helps when one file holds many rules.
    label = f"rule {raw['name']!r}: " if isinstance(raw.get("name"), str) else ""
    try:
        spec = RuleSpec.model_validate(raw, context={"registry": registry})
    except ValidationError as exc:
        for error in exc.errors():
            loc, message = _schema_message(error)
            located.add((*path, *loc), f"{label}{message}")
        return None

    if all(s.when is not None and s.when.repeated.times > 1 for s in spec.steps):
        # A first occurrence with no step creates no run, so nothing is ever counted and the
        # escalation could never be reached.
        located.add(
            (*path, "steps"),
            f"{label}every step waits for a repetition, so the first alert would do nothing and "
            "never count as one; add a step without `when`",
        )
        return None

    namespace = compile_template(spec.target.namespace)
    name = compile_template(spec.target.name)
    target_ok = _check_literal_target(
        spec.target, namespace, name, (*path, "target"), policy, located, label
    )
    kind = spec.target.kind
    steps = _compile_steps(spec.steps, (*path, "steps"), kind, registry, located, label)
    on_resolved = _compile_steps(
        spec.on_resolved or [], (*path, "on_resolved"), kind, registry, located, label
    )
    if steps is None or on_resolved is None or not target_ok:
        return None
    guards = spec.guards or GuardsSpec()
    return Rule(
        name=spec.name,
        description=spec.description,
        file=located.file,
        line=located.line_of(path),
        matchers=tuple(parse_matcher(text) for text in spec.match),
        target_kind=kind,
        target_namespace=namespace,
        target_name=name,
        steps=steps,
        on_resolved=on_resolved,
        verify_within_s=spec.verify.resolved_within if spec.verify else None,
        cooldown_s=guards.cooldown,
        max_runs=guards.max_runs.count if guards.max_runs else None,
        max_runs_per_s=guards.max_runs.per if guards.max_runs else None,
    )


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str | None  # as written, even when the rule has errors, to report duplicates too
    name_line: int
    rule: Rule | None


def _compile_file(
    file: str, text: str, registry: Registry, policy: NamespacePolicy
) -> tuple[list[_Compiled], list[RuleError]]:
    located = _Located(file)
    document = _parse_yaml(text, located)
    if located.errors:
        return [], located.errors
    if document is None:
        located.add((), "file is empty; expected a mapping with a `rules` list")
        return [], located.errors
    if not isinstance(document, dict):
        located.add((), "expected a mapping with a `rules` list at the top of the file")
        return [], located.errors
    for key in document:
        if key != "rules":
            hint = " (did you mean 'rules'?)" if difflib.get_close_matches(key, ["rules"]) else ""
            located.add((key,), f"unknown top-level key {key!r}{hint}; only `rules` is allowed")
    raw_rules = document.get("rules")
    if "rules" not in document:
        located.add((), "missing `rules` list")
    elif not isinstance(raw_rules, list) or not raw_rules:
        # An empty file is almost always a mistake (a bad merge, a template that rendered
        # nothing); a file that is meant to be off should be removed instead.
        located.add(("rules",), "`rules` must be a non-empty list")
    compiled: list[_Compiled] = []
    for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
        rule = _compile_rule(raw, ("rules", index), registry, policy, located)
        name = raw.get("name") if isinstance(raw, dict) else None
        compiled.append(
            _Compiled(
                name=name if isinstance(name, str) else None,
                name_line=located.line_of(("rules", index, "name")),
                rule=rule,
            )
        )
    return compiled, located.errors


def _in_file_order(errors: Iterable[RuleError]) -> list[RuleError]:
    # Stable on (file, line): errors on one line keep the order they were found in.
    return sorted(errors, key=lambda e: (e.file, e.line))


def _compile(
    files: Mapping[str, str], registry: Registry, policy: NamespacePolicy
) -> tuple[RuleSet | None, list[RuleError]]:
    errors: list[RuleError] = []
    rules: list[Rule] = []
    first: dict[str, str] = {}
    for file in sorted(files):
        compiled, file_errors = _compile_file(file, files[file], registry, policy)
        errors.extend(file_errors)
        for item in compiled:
            if item.name is not None and item.name in first:
                message = f"duplicate rule name {item.name!r}; first defined at {first[item.name]}"
                errors.append(RuleError(file, item.name_line, message))
                continue
            if item.name is not None:
                first[item.name] = f"{file}:{item.name_line}"
            if item.rule is not None:
                rules.append(item.rule)
    if errors:
        return None, _in_file_order(errors)
    source = {file: hashlib.sha256(text.encode()).hexdigest() for file, text in files.items()}
    return RuleSet(rules, source), []


def compile_files(files: Mapping[str, str], registry: Registry, policy: NamespacePolicy) -> RuleSet:
    """A RuleSet from file name -> YAML text, without touching the disk. Raises RuleSetError."""
    if not files:
        raise RuleSetError([RuleError("<rules>", 0, "no rule files given")])
    ruleset, errors = _compile(files, registry, policy)
    if ruleset is None:
        raise RuleSetError(errors)
    return ruleset


def lint_files(
    files: Mapping[str, str], registry: Registry, policy: NamespacePolicy
) -> list[RuleError]:
    try:
        compile_files(files, registry, policy)
    except RuleSetError as exc:
        return exc.errors
    return []


# --------------------------------------------------------------------------------------------
# The loader: the only code here that reads the disk.


def _read_directory(directory: Path) -> tuple[dict[str, str], list[RuleError]]:
    if not directory.exists():
        return {}, [RuleError(str(directory), 0, "rules directory does not exist")]
    if not directory.is_dir():
        return {}, [RuleError(str(directory), 0, "rules path is not a directory")]
    # Only top-level files: a Kubernetes ConfigMap mount also holds `..data` and timestamped
    # directories with the same files, and editors leave dot-files behind.
    paths = sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )
    if not paths:
        return {}, [RuleError(str(directory), 0, "no *.yaml or *.yml rule files in directory")]
    files: dict[str, str] = {}
    errors: list[RuleError] = []
    for path in paths:
        try:
            files[str(path)] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(RuleError(str(path), 0, f"not valid UTF-8 (byte {exc.start})"))
        except OSError as exc:
            errors.append(RuleError(str(path), 0, f"cannot read: {exc.strerror or exc}"))
    return files, errors


def _load(
    directory: Path, registry: Registry, policy: NamespacePolicy
) -> tuple[RuleSet | None, list[RuleError]]:
    files, errors = _read_directory(directory)
    if not files:
        return None, errors
    ruleset, compile_errors = _compile(files, registry, policy)
    errors = _in_file_order(errors + compile_errors)
    return (None, errors) if errors else (ruleset, [])


def load_rules(directory: Path, registry: Registry, policy: NamespacePolicy) -> RuleSet:
    """Every ``*.yaml``/``*.yml`` file of ``directory``. Raises RuleSetError with all errors."""
    ruleset, errors = _load(directory, registry, policy)
    if ruleset is None:
        raise RuleSetError(errors)
    return ruleset


def lint(directory: Path, registry: Registry, policy: NamespacePolicy) -> list[RuleError]:
    """Every error in ``directory``'s rule files; empty when they load."""
    return _load(directory, registry, policy)[1]


class RuleHolder:
    """The rule set in force. A failed reload keeps the last good set, so a typo pushed to a
    running service degrades to "old rules" rather than "no rules"."""

    def __init__(self, directory: Path, registry: Registry, policy: NamespacePolicy) -> None:
        self._directory = directory
        self._registry = registry
        self._policy = policy
        # Serialises reloads so a slow, older reload cannot overwrite a newer one's result.
        self._lock = threading.Lock()
        self._last_errors: tuple[RuleError, ...] = ()
        # At start-up there is nothing to fall back to: invalid rules fail the start.
        self._current = load_rules(directory, registry, policy)

    @property
    def current(self) -> RuleSet:
        return self._current

    @property
    def last_errors(self) -> tuple[RuleError, ...]:
        """Errors of the latest reload; non-empty means the service runs on older rules."""
        return self._last_errors

    def reload(self) -> list[RuleError]:
        with self._lock:
            ruleset, errors = _load(self._directory, self._registry, self._policy)
            self._last_errors = tuple(errors)
            if ruleset is not None:
                # One reference assignment: readers see the old set or the new one, never a mix.
                self._current = ruleset
            return errors


def _deep_copy(value: Any) -> Any:
    # Params are JSON-shaped (model_dump(mode="json")): dicts, lists and scalars only.
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
