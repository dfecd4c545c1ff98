"""Reading rule test files from disk: the file, the rule files it names, compiled.

``load_test_file`` returns a ``TestFile`` (the spec, where every key sits, and the rules
compiled under each test's settings) or the errors of the file and of its rule files, each as
``file:line: message``. Nothing runs here; ``player`` plays what this loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from receiver.config.settings import APPROVAL_TTL_S
from receiver.guards.policy import GuardSettings
from receiver.model import NamespacePolicy
from receiver.rules.compile import compile_files
from receiver.rules.errors import RuleError, RuleSetError, in_file_order
from receiver.rules.file_encoding import NotUtf8, decode_rule_file
from receiver.rules.loader import read_rule_bytes
from receiver.rules.model import RuleSet
from receiver.rules.yaml_lines import Located
from receiver.ruletest.parse import check_names, parse_test_file_parts
from receiver.ruletest.spec import DEFAULT_START, SettingsSpec, TestFileSpec, TestSpec
from receiver.store.events import LATE_DELIVERY_WINDOW_S
from remediations.base import Registry

__all__ = ["SimSettings", "TestFile", "load_test_file", "settings_of", "tests_of"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SimSettings:
    """The configuration one test runs under: the test's settings, then the file's, over the
    service's defaults. ``start``: the simulated time at offset 0."""

    start: datetime
    policy: NamespacePolicy
    guards: GuardSettings
    approval_ttl_s: float
    late_delivery_window_s: float

    def at(self, offset_s: float) -> datetime:
        """The simulated time ``offset_s`` seconds after the start."""
        return self.start + timedelta(seconds=offset_s)


@dataclass(frozen=True, slots=True)
class TestFile:
    """A loaded test file: ``path`` as given, the spec, the lines of its keys, and the rule set
    each test runs against (compiled under that test's namespace policy)."""

    __test__ = False

    path: str
    spec: TestFileSpec
    located: Located
    rulesets: tuple[RuleSet, ...]
    settings: tuple[SimSettings, ...]

    def line(self, path: Sequence[str | int]) -> int:
        """The line of a key path of this file (the nearest enclosing one that has a line)."""
        return self.located.line_of(path)


def settings_of(file: SettingsSpec | None, test: SettingsSpec | None) -> SimSettings:
    """The settings a test runs under: each one the test's, else the file's, else the
    service's default."""
    layers = [layer for layer in (test, file) if layer is not None]

    def first(get: Callable[[SettingsSpec], _T | None]) -> _T | None:
        return next((v for v in map(get, layers) if v is not None), None)

    namespaces = first(lambda s: s.namespaces)
    policy = (
        NamespacePolicy()
        if namespaces is None
        else NamespacePolicy(allow=tuple(namespaces.allow), deny=tuple(namespaces.deny))
    )
    guards = GuardSettings()
    budget = first(lambda s: s.budget)
    if budget is not None:
        guards = replace(guards, budget_count=budget.count, budget_window_s=budget.window)
    breaker = first(lambda s: s.breaker)
    if breaker is not None:
        guards = replace(
            guards,
            breaker_failures=breaker.failures,
            breaker_window_s=breaker.window,
            breaker_open_for_s=breaker.open_for,
        )
    lock_ttl = first(lambda s: s.lock_ttl)
    if lock_ttl is not None:
        guards = replace(guards, lock_ttl_s=lock_ttl)
    return SimSettings(
        start=first(lambda s: s.start) or DEFAULT_START,
        policy=policy,
        guards=guards,
        approval_ttl_s=first(lambda s: s.approval_ttl) or APPROVAL_TTL_S,
        late_delivery_window_s=first(lambda s: s.late_delivery_window) or LATE_DELIVERY_WINDOW_S,
    )


def load_test_file(path: Path, registry: Registry) -> TestFile | list[RuleError]:
    """The test file at ``path`` with its rules compiled, or every error found (the test
    file's and its rule files'), in file order.

    Found in one pass, each check that does not need an earlier one to pass: the test file's
    own errors and the rule files it names that cannot be read; then, once every rule file is
    read and the test file passes its schema (the settings the rules compile under), the rule
    files' errors; and, once they compile, the rule and action names the tests use."""
    name = str(path)
    try:
        text = decode_rule_file(read_rule_bytes(path))
    except NotUtf8 as exc:
        return [RuleError(name, exc.line, exc.message)]
    except OSError as exc:
        return [RuleError(name, 0, f"cannot read: {exc.strerror or exc}")]
    parsed = parse_test_file_parts(name, text)
    spec, located = parsed.spec, parsed.located
    sources, all_read = _rule_sources(path, parsed.rule_files or [], located)
    if spec is None or not all_read:
        # The rule files are compiled together, as a rules directory is, and under the
        # settings of each test: both are needed first.
        return in_file_order(located.errors)
    settings = tuple(settings_of(spec.settings, test.settings) for test in spec.tests)
    compiled: dict[NamespacePolicy, RuleSet] = {}
    rulesets: list[RuleSet] = []
    for test_settings in settings:
        policy = test_settings.policy
        if policy not in compiled:
            try:
                compiled[policy] = compile_files(sources, registry, policy)
            except RuleSetError as exc:
                return in_file_order([*located.errors, *exc.errors])
        rulesets.append(compiled[policy])
    names = {rule.name for ruleset in compiled.values() for rule in ruleset.rules}
    check_names(spec, located, rules=names, actions=registry.names())
    if located.errors:
        return in_file_order(located.errors)
    return TestFile(name, spec, located, tuple(rulesets), settings)


def _rule_sources(
    path: Path, rule_files: Sequence[str], located: Located
) -> tuple[dict[str, str], bool]:
    """The text of each rule file, by the path it is reported under, and whether every one
    was read; a file that cannot be read, or is listed twice, is an error on its line of
    ``rule_files``. (Counting the texts read would take a file listed twice, which is read
    once, for one that could not be read, and no error would say why nothing ran.)"""
    sources: dict[str, str] = {}
    first_at: dict[str, int] = {}
    read = True
    for index, relative in enumerate(rule_files):
        rule_path = path.parent / relative
        key = str(rule_path)
        if key in first_at:
            line = located.line_of(("rule_files", first_at[key]))
            located.add(
                ("rule_files", index),
                f"{rule_path} is listed twice in rule_files (first at line {line}): "
                "list each rule file once",
            )
            read = False
            continue
        first_at[key] = index
        try:
            sources[key] = decode_rule_file(read_rule_bytes(rule_path))
        except NotUtf8 as exc:
            located.add(("rule_files", index), f"{rule_path}:{exc.line}: {exc.message}")
            read = False
        except OSError as exc:
            located.add(("rule_files", index), f"cannot read {rule_path}: {exc.strerror or exc}")
            read = False
    return sources, read


def tests_of(file: TestFile) -> list[tuple[int, TestSpec, RuleSet, SimSettings]]:
    """Each test of the file with its index, rule set and settings."""
    return [(i, test, file.rulesets[i], file.settings[i]) for i, test in enumerate(file.spec.tests)]
