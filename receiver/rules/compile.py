"""Rule files' text -> a validated RuleSet, with every error at its file and line. Pure.

Compilation is two passes per rule: the pydantic schema (``receiver.rules.schema``), then the
checks that need the action registry and the namespace policy (params models, target kinds,
literal namespaces). All errors are collected, so ``remediator lint`` shows the whole list at
once. Nothing here reads a file: ``receiver.rules.loader`` does, and hands the text over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from receiver.matchers import Matcher, parse_item
from receiver.model import NamespacePolicy
from receiver.rules.errors import RuleError, RuleSetError, in_file_order
from receiver.rules.matcher_lint import matcher_warnings
from receiver.rules.model import Rule, RuleSet
from receiver.rules.reach import check_reach
from receiver.rules.schema import (
    GuardsSpec,
    ResolvedStepSpec,
    RuleSpec,
    StepSpec,
    TargetSpec,
)
from receiver.rules.schema_messages import schema_message, top_level_key_problem
from receiver.rules.steps import (
    check_channel,
    check_params,
    compile_announce,
    compile_steps,
    prefixed,
)
from receiver.rules.yaml_lines import KeyPath, Located, parse_yaml
from receiver.rules.yaml_loaders import boolean_word
from receiver.templating import (
    TargetError,
    Template,
    check_template_text,
    compile_template,
    validate_target,
)
from remediations.base import Registry
from remediations.targets import Target, target_kind

__all__ = ["check_files", "compile_files", "lint_files"]


def _check_literal_target(
    spec: TargetSpec,
    namespace: Template,
    name: Template,
    path: KeyPath,
    policy: NamespacePolicy,
    located: Located,
    label: str,
) -> bool:
    """A part of the target without templates is known now: refuse it now, not on the first
    alert. Templated parts are stood in for by a valid placeholder and checked at render time.
    The kind itself, and whether it takes a namespace, are known now too."""
    try:
        kind = target_kind(spec.kind)
    except TargetError as exc:
        located.add((*path, "kind"), f"{label}target.kind: {exc}")
        return False
    if kind.namespaced != (spec.namespace is not None):
        needs = "needs a namespace" if kind.namespaced else "has no namespace; remove it"
        located.add((*path, "namespace"), f"{label}target: a {spec.kind} {needs}")
        return False
    try:
        check_template_text(spec.kind, namespace, name)
    except TargetError as exc:
        located.add((*path, exc.field), f"{label}target.{exc.field}: {exc}")
        return False
    literal_ns = None if namespace.references else namespace.render({}, {})
    literal_name = None if name.references else name.render({}, {})
    if literal_ns is None and literal_name is None:
        return True
    placeholder_ns = "placeholder" if kind.namespaced else ""
    probe = Target(spec.kind, literal_ns or placeholder_ns, literal_name or kind.example)
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
    located: Located,
    channels: Collection[str] | None,
) -> Rule | None:
    if not isinstance(raw, dict):
        located.add(path, "each item of `rules` must be a mapping with name, match, target, steps")
        return None
    # Naming the rule in each message helps when one file holds many rules.
    label = f"rule {raw['name']!r}: " if isinstance(raw.get("name"), str) else ""
    try:
        spec = RuleSpec.model_validate(raw, context={"registry": registry})
    except ValidationError as exc:
        refused = []
        for error in exc.errors():
            loc, message = schema_message(error)
            if (word := boolean_word(located.words, (*path, *loc), error)) is not None:
                message = prefixed(loc, word)  # `name: on`: YAML 1.1 read it as true
            located.add((*path, *loc), f"{label}{message}")
            refused.append(tuple(error["loc"]))
        _check_params_of_valid_steps(raw, refused, path, registry, located, label)
        return None

    valid = True
    if all(
        s.when is not None and s.when.repeated is not None and s.when.repeated.times > 1
        for s in spec.steps
    ):
        # A first occurrence with no step creates no run, so nothing is ever counted and the
        # escalation could never be reached. The other checks still run: all errors at once.
        located.add(
            (*path, "steps"),
            f"{label}every step waits for a repetition, so the first alert would do nothing and "
            "never count as one; add a step without `when`",
        )
        valid = False

    matchers = _compile_matchers(spec.match, (*path, "match"), located, label)
    namespace = compile_template(spec.target.namespace or "")
    name = compile_template(spec.target.name)
    target_ok = _check_literal_target(
        spec.target, namespace, name, (*path, "target"), policy, located, label
    )
    kind = spec.target.kind
    reach = (spec.match, kind, (namespace, name), policy, (*path, "match"), located, label)
    valid = valid and (not target_ok or check_reach(*reach))
    where = (kind, registry, located, label, channels)
    steps = compile_steps(spec.steps, (*path, "steps"), *where, rule=spec.name)
    on_resolved = compile_steps(
        spec.on_resolved or [], (*path, "on_resolved"), *where, rule=spec.name
    )
    on_failed = compile_steps(spec.on_failed or [], (*path, "on_failed"), *where, rule=spec.name)
    notify_at = (*path, "notify", "channel")
    if spec.notify is not None and not check_channel(
        spec.notify.channel, notify_at, channels, located, label, rule=spec.name
    ):
        valid = False
    if spec.on_failed and spec.verify is None:
        # Without verification nothing can fail it: the ladder would never be climbed.
        located.add(
            (*path, "on_failed"),
            f"{label}on_failed runs when verification fails; add `verify: {{resolved_within: "
            "...}`",
        )
        return None
    if steps is None or on_resolved is None or on_failed is None or not target_ok or not valid:
        return None
    guards = spec.guards or GuardsSpec()
    return Rule(
        name=spec.name,
        description=spec.description,
        file=located.file,
        line=located.line_of(path),
        matchers=matchers,
        target_kind=kind,
        target_namespace=namespace,
        target_name=name,
        steps=steps,
        on_resolved=on_resolved,
        verify_within_s=spec.verify.resolved_within if spec.verify else None,
        cooldown_s=guards.cooldown,
        max_runs=guards.max_runs.count if guards.max_runs else None,
        max_runs_per_s=guards.max_runs.per if guards.max_runs else None,
        settle_s=spec.verify.settle if spec.verify else None,
        on_failed=on_failed,
        announce=compile_announce(spec.notify),
    )


_STEP_GROUPS: tuple[tuple[str, type[ResolvedStepSpec]], ...] = (
    ("steps", StepSpec),
    ("on_resolved", ResolvedStepSpec),
    ("on_failed", ResolvedStepSpec),
)


def _check_params_of_valid_steps(
    raw: Mapping[str, Any],
    refused: Sequence[tuple[int | str, ...]],
    path: KeyPath,
    registry: Registry,
    located: Located,
    label: str,
) -> None:
    """The params check of each step the schema found no fault in, when it refused the rule
    for another part (``refused``: the locations of its errors): a bad `guards` or `match`
    hid a step's bad params until the next lint, and rules/README.md promises every error at
    once. The checks that need the whole rule (its target's kind, `when` over all steps) wait
    until the rule validates."""
    for group, spec_type in _STEP_GROUPS:
        items = raw.get(group)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if any(loc[:2] == (group, index) for loc in refused):
                continue  # said already, by the schema
            try:
                spec = spec_type.model_validate(item, context={"registry": registry})
            except ValidationError:
                continue  # the schema said why, at the rule's level
            check_params(spec, (*path, group, index), registry, located, label)


def _compile_matchers(
    items: Sequence[str], path: KeyPath, located: Located, label: str
) -> tuple[Matcher, ...]:
    """Each item as Alertmanager's fallback mode reads it (the schema has checked that it
    parses), with a warning where Alertmanager would log one, and ``matcher_warnings``."""
    matchers: list[Matcher] = []
    for index, item in enumerate(items):
        parsed = parse_item(item)
        where = f"{label}match[{index}]: "
        warning = parsed.describe_warning()
        if warning is not None:
            located.warn((*path, index), where + warning)
        for matcher in parsed.matchers:
            for said in matcher_warnings(matcher):
                located.warn((*path, index), where + said)
        matchers.extend(parsed.matchers)
    return tuple(matchers)


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str | None  # as written, even when the rule has errors, to report duplicates too
    name_line: int
    rule: Rule | None


def _rule_scope(document: Any, path: KeyPath) -> tuple[str, KeyPath]:
    """A path in a rule file as its messages name it: the rule by name (as ``_compile_rule``
    labels it) and the path inside the rule."""
    if len(path) < 2 or path[0] != "rules" or not isinstance(path[1], int):
        return "", path
    rules = document.get("rules") if isinstance(document, dict) else None
    rule = rules[path[1]] if isinstance(rules, list) and path[1] < len(rules) else None
    name = rule.get("name") if isinstance(rule, dict) else None
    return (f"rule {name!r}: ", path[2:]) if isinstance(name, str) else ("", path)


def _compile_file(
    file: str,
    text: str,
    registry: Registry,
    policy: NamespacePolicy,
    channels: Collection[str] | None,
) -> tuple[list[_Compiled], Located]:
    located = Located(file, scope=_rule_scope)
    document = parse_yaml(text, located)
    if located.errors:
        return [], located
    if document is None:
        located.add((), "file is empty; expected a mapping with a `rules` list")
        return [], located
    if not isinstance(document, dict):
        located.add((), "expected a mapping with a `rules` list at the top of the file")
        return [], located
    for key in document:
        if key != "rules":
            located.add((key,), top_level_key_problem(key))
    raw_rules = document.get("rules")
    if "rules" not in document:
        located.add((), "missing `rules` list")
    elif not isinstance(raw_rules, list) or not raw_rules:
        # An empty file is almost always a mistake (a bad merge, a template that rendered
        # nothing); a file that is meant to be off should be removed instead.
        located.add(("rules",), "`rules` must be a non-empty list")
    compiled: list[_Compiled] = []
    for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
        rule = _compile_rule(raw, ("rules", index), registry, policy, located, channels)
        name = raw.get("name") if isinstance(raw, dict) else None
        compiled.append(
            _Compiled(
                name=name if isinstance(name, str) else None,
                name_line=located.line_of(("rules", index, "name")),
                rule=rule,
            )
        )
    return compiled, located


def compile_files(
    files: Mapping[str, str],
    registry: Registry,
    policy: NamespacePolicy,
    *,
    channels: Collection[str] | None = None,
) -> RuleSet:
    """A RuleSet from file name -> YAML text, without touching the disk.

    Raises RuleSetError with every error of every file, in file order (also when ``files`` is
    empty: a service without rules is a mistake, not a quiet no-op). Warnings go to
    ``RuleSet.warnings``, or to ``RuleSetError.warnings`` beside the errors. ``channels``: the
    names of the configured notify channels, which a rule's ``notify:`` and its ``notify``
    steps must name (``receiver.rules.steps.check_channel``); None: not checked.
    """
    if not files:
        raise RuleSetError([RuleError("<rules>", 0, "no rule files given")])
    errors: list[RuleError] = []
    warnings: list[RuleError] = []
    rules: list[Rule] = []
    first: dict[str, str] = {}
    for file in sorted(files):
        compiled, located = _compile_file(file, files[file], registry, policy, channels)
        errors.extend(located.errors)
        warnings.extend(located.warnings)
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
        raise RuleSetError(in_file_order(errors), in_file_order(warnings))
    source = {file: hashlib.sha256(text.encode()).hexdigest() for file, text in files.items()}
    return RuleSet(rules, source, in_file_order(warnings))


def lint_files(
    files: Mapping[str, str],
    registry: Registry,
    policy: NamespacePolicy,
    *,
    channels: Collection[str] | None = None,
) -> list[RuleError]:
    """Every error in the files (name -> YAML text), in file order; empty when they compile.
    ``channels`` as ``compile_files`` takes them."""
    return check_files(files, registry, policy, channels=channels)[0]


def check_files(
    files: Mapping[str, str],
    registry: Registry,
    policy: NamespacePolicy,
    *,
    channels: Collection[str] | None = None,
) -> tuple[list[RuleError], list[RuleError]]:
    """(errors, warnings) of the files (name -> YAML text), each in file order; ``channels``
    as ``compile_files`` takes them."""
    try:
        ruleset = compile_files(files, registry, policy, channels=channels)
    except RuleSetError as exc:
        return exc.errors, exc.warnings
    return [], list(ruleset.warnings)
