"""``remediator test``: load the test files, start the servers once, play every test.

Every file is loaded and checked before anything starts: a bad test file (or a bad rule file it
names) is reported as ``file:line: message`` and nothing runs (exit 2). Then each test plays in
a database and a Redis key space of its own, and a line per test says PASS or FAIL, followed by
the failures, each ``file:line: what was expected, what happened``. Exit 1 when a test failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from receiver.rules.errors import RuleError
from receiver.ruletest.expect import Failure
from receiver.ruletest.files import TestFile, load_test_file
from receiver.ruletest.player import Player, approvers_of
from receiver.ruletest.sim import simulation
from receiver.ruletest.world import Servers, ServersError
from receiver.store import StoreUnavailable
from remediations.base import Registry

__all__ = ["EXIT_BAD_FILE", "EXIT_FAILED", "Report", "TestResult", "load_files", "play_files"]

EXIT_FAILED = 1
EXIT_BAD_FILE = 2

Emit = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test's outcome: its failures (none: passed) and how long it took."""

    __test__ = False

    file: str
    name: str
    failures: tuple[Failure, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class Report:
    """Every test's result, in the order they ran."""

    results: list[TestResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[TestResult]:
        return [r for r in self.results if not r.passed]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else 0

    def summary(self) -> str:
        files = len({r.file for r in self.results})
        passed = len(self.results) - len(self.failed)
        return (
            f"{len(self.results)} test(s) in {files} file(s): {passed} passed, "
            f"{len(self.failed)} failed ({self.seconds:.1f}s)"
        )


def load_files(paths: Sequence[Path], registry: Registry) -> tuple[list[TestFile], list[RuleError]]:
    """Every test file loaded, and every error of those that do not load, in file order. A
    file given more than once (``rules/tests/*.yaml rules/tests/high-memory.yaml``) is played
    once, as pytest plays a path given twice: played again, its tests counted twice in the
    summary while it said "1 file(s)"."""
    files: list[TestFile] = []
    errors: list[RuleError] = []
    seen: set[Path] = set()
    for path in paths:
        same = path.resolve()
        if same in seen:
            continue
        seen.add(same)
        loaded = load_test_file(path, registry)
        if isinstance(loaded, TestFile):
            files.append(loaded)
        else:
            errors.extend(loaded)
    return files, errors


async def play_files(
    files: Sequence[TestFile], servers: Servers, registry: Registry, emit: Emit
) -> Report:
    """Play every test of every file on ``servers``; ``emit`` gets a line per file and per
    test, and the failures."""
    report = Report()
    began = time.perf_counter()
    remaining = sum(len(file.spec.tests) for file in files)
    for file in files:
        emit(file.path)
        for index, test in enumerate(file.spec.tests):
            remaining -= 1
            result = await _play_test(file, index, servers, registry, more=remaining > 0)
            report.results.append(result)
            verdict = "PASS" if result.passed else "FAIL"
            emit(f"  {verdict}  {test.name} ({result.seconds:.2f}s)")
            for failure in result.failures:
                emit(str(failure))
    report.seconds = time.perf_counter() - began
    return report


async def _play_test(
    file: TestFile, index: int, servers: Servers, registry: Registry, *, more: bool
) -> TestResult:
    test = file.spec.tests[index]
    ruleset, settings = file.rulesets[index], file.settings[index]
    began = time.perf_counter()
    async with (
        servers.slot(more=more) as (database_url, prefix),
        simulation(
            database_url=database_url,
            redis_client=servers.redis,
            key_prefix=prefix,
            ruleset=ruleset,
            registry=registry,
            settings=settings,
            approvers=approvers_of(test),
        ) as sim,
    ):
        order = {rule.name: i for i, rule in enumerate(ruleset.rules)}
        try:
            failures = await Player(sim, file, index, settings, order).play()
        except StoreUnavailable as exc:
            raise ServersError(f"PostgreSQL went away during the test: {exc}") from exc
        except Exception as exc:  # a bug here must not hide the other tests' results
            line = file.line(("tests", index))
            message = f"the simulation failed: {type(exc).__name__}: {exc}"
            failures = [Failure(file.path, line, message)]
    return TestResult(file.path, test.name, tuple(failures), time.perf_counter() - began)
