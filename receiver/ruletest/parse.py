"""A rule test file's text -> its validated spec, with every problem at its line. Pure.

Two passes, as for rule files: the pydantic schema (``spec.py``), then what the schema cannot
see on its own: alert names used before they are declared, a timeline out of time order, an
alert resolved before it fired, and (``check_names``, once the rule files are compiled) rule
and action names that do not exist. Every problem is collected, so one run shows them all:
the second pass runs on every test that passes the schema, even when another one does not.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from receiver.rules.shapes import shape_message
from receiver.rules.yaml_lines import KeyPath, Located, parse_yaml
from receiver.ruletest.spec import (
    FIELD_NAMES,
    NOTIFICATION_KINDS,
    SPECS,
    RuleFiles,
    TestFileSpec,
    TestSpec,
)
from receiver.typos import plausible_key

__all__ = ["ParsedFile", "check_names", "parse_test_file", "parse_test_file_parts"]

_T = TypeVar("_T")

# The keys of each part of a test file by its class's name, which pydantic's error for a part
# that is not a map names: the message names the keys instead.
_SPEC_FIELDS = {
    spec.__name__: tuple((f.alias or name) for name, f in spec.model_fields.items())
    for spec in SPECS
}


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """What could be read of a test file. ``spec``: the file when it passes the schema (the
    second pass may still have found errors: see ``located.errors``); ``rule_files``: the
    rule files it names when that key is valid, whatever else is wrong, so that they can be
    checked in the same run."""

    spec: TestFileSpec | None
    located: Located
    rule_files: list[str] | None


def parse_test_file(name: str, text: str) -> tuple[TestFileSpec | None, Located]:
    """The spec of the test file ``name`` holding ``text``, or None; ``Located`` holds the
    errors (file:line) and the line of every key, for reporting failures later."""
    parsed = parse_test_file_parts(name, text)
    return (None if parsed.located.errors else parsed.spec), parsed.located


def parse_test_file_parts(name: str, text: str) -> ParsedFile:
    """``parse_test_file``, keeping what passed: every error that does not depend on another
    one is found in this one pass (a schema error in one test hides neither the second-pass
    errors of the others nor the rule files)."""
    located = Located(name)
    data = parse_yaml(text, located)
    if located.errors:
        return ParsedFile(None, located, None)
    if not isinstance(data, dict):
        located.add((), "a rule test file is a mapping with `rule_files` and `tests`")
        return ParsedFile(None, located, None)
    rule_files = _valid(_RULE_FILES, data.get("rule_files"))
    try:
        spec = TestFileSpec.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = _data_path(data, error)
            located.add(path, _message(path, error))
        # The schema's errors are reported above; each test that is valid on its own still
        # gets the second pass.
        tests = data.get("tests")
        valid = (
            ((i, _valid(_TEST, item)) for i, item in enumerate(tests))
            if isinstance(tests, list)
            else ()
        )
        _second_pass([(i, test) for i, test in valid if test is not None], located)
        return ParsedFile(None, located, rule_files)
    _second_pass(list(enumerate(spec.tests)), located)
    return ParsedFile(spec, located, list(spec.rule_files))


def _second_pass(tests: list[tuple[int, TestSpec]], located: Located) -> None:
    """What each test valid on its own is checked for beyond its schema, ``tests[index]``'s
    errors at their lines; and its name unique in the file, as a report names a test by it
    (two of one name could not be told apart in the results)."""
    first: dict[str, int] = {}
    for index, test in tests:
        _check_test(test, ("tests", index), located)
        if (earlier := first.setdefault(test.name, index)) != index:
            located.add(
                ("tests", index, "name"),
                f"test name {test.name!r} is used by tests[{earlier}] too: give each test a"
                " name of its own",
            )


_RULE_FILES: TypeAdapter[list[str]] = TypeAdapter(RuleFiles)
_TEST: TypeAdapter[TestSpec] = TypeAdapter(TestSpec)


def _valid(adapter: TypeAdapter[_T], value: Any) -> _T | None:
    """``value`` validated, or None (its errors are reported by the whole file's validation)."""
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def check_names(
    spec: TestFileSpec,
    located: Located,
    *,
    rules: Collection[str],
    actions: Collection[str],
) -> None:
    """Rule and action names the tests use must exist (in the compiled rule files and the
    action registry): an expectation about a rule that is not there could never pass."""
    for i, test in enumerate(spec.tests):
        base: KeyPath = ("tests", i)
        for path, rule in _rule_refs(test, base):
            if rule not in rules:
                located.add(path, _unknown("rule", rule, rules, "in rule_files"))
        for path, action in _action_refs(test, base):
            if action not in actions:
                located.add(path, _unknown("action", action, actions, "registered"))


# -- the second pass -------------------------------------------------------------------------


def _check_test(test: TestSpec, base: KeyPath, located: Located) -> None:
    alerts = set(test.alerts)
    fired: set[str] = set()
    last_at = 0.0
    for j, entry in enumerate(test.timeline):
        path: KeyPath = (*base, "timeline", j)
        if entry.at < last_at:
            located.add(
                (*path, "at"),
                "timeline entries must be in time order: this one is earlier than the one before",
            )
        last_at = max(last_at, entry.at)
        kind = entry.kind
        if kind in NOTIFICATION_KINDS:
            for handle in getattr(entry, kind):
                if handle not in alerts:
                    located.add((*path, kind), _unknown("alert", handle, alerts, "under alerts"))
                elif kind == "firing":
                    fired.add(handle)
                elif handle not in fired:
                    located.add((*path, kind), f"{kind}: alert {handle!r} has not fired yet")
        for decision in (entry.approve, entry.reject):
            if decision is not None and decision.alert is not None and decision.alert not in alerts:
                located.add(
                    (*path, kind, "alert"),
                    _unknown("alert", decision.alert, alerts, "under alerts"),
                )
    for j, expect in enumerate(test.expect):
        for k, run in enumerate(expect.runs or ()):
            if run.alert is not None and run.alert not in alerts:
                located.add(
                    (*base, "expect", j, "runs", k, "alert"),
                    _unknown("alert", run.alert, alerts, "under alerts"),
                )
            if run.refused_by is not None and run.outcome not in (None, "refused"):
                located.add(
                    (*base, "expect", j, "runs", k, "outcome"),
                    "a run refused by a guard has the outcome `refused`",
                )
        for group in ("approvals", "skips"):
            for k, item in enumerate(getattr(expect, group) or ()):
                if item.alert is not None and item.alert not in alerts:
                    located.add(
                        (*base, "expect", j, group, k, "alert"),
                        _unknown("alert", item.alert, alerts, "under alerts"),
                    )


def _rule_refs(test: TestSpec, base: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    for j, entry in enumerate(test.timeline):
        for kind in ("approve", "reject"):
            decision = getattr(entry, kind)
            if decision is not None and decision.rule is not None:
                yield (*base, "timeline", j, kind, "rule"), decision.rule
    for j, expect in enumerate(test.expect):
        for group in ("runs", "approvals", "skips"):
            for k, item in enumerate(getattr(expect, group) or ()):
                if item.rule is not None:
                    yield (*base, "expect", j, group, k, "rule"), item.rule


def _action_refs(test: TestSpec, base: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    fixtures = [((*base, "fixtures"), test.fixtures)]
    for j, entry in enumerate(test.timeline):
        if entry.fixtures is not None:
            fixtures.append(((*base, "timeline", j, "fixtures"), entry.fixtures))
        for kind in ("approve", "reject"):
            decision = getattr(entry, kind)
            if decision is not None and decision.action is not None:
                yield (*base, "timeline", j, kind, "action"), decision.action
    for path, items in fixtures:
        for k, fixture in enumerate(items):
            for action in fixture.steps:
                yield (*path, k, "steps", action), action
    for j, expect in enumerate(test.expect):
        for k, run in enumerate(expect.runs or ()):
            for phase in ("steps", "on_resolved"):
                for m, step in enumerate(getattr(run, phase) or ()):
                    yield (*base, "expect", j, "runs", k, phase, m), step.action
        for k, approval in enumerate(expect.approvals or ()):
            if approval.action is not None:
                yield (*base, "expect", j, "approvals", k, "action"), approval.action


def _unknown(what: str, name: str, known: Collection[str], where: str) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"no {what} {name!r} {where}{suffix}"


# -- pydantic errors as messages -------------------------------------------------------------


def _data_path(data: Any, error: ErrorDetails) -> KeyPath:
    """The part of pydantic's ``loc`` that indexes into the document (it adds the names of
    union members and validators, which are no keys), and the key a missing or unknown field
    error is about."""
    loc = tuple(error["loc"])
    keyed = error["type"] in ("extra_forbidden", "missing")
    path: list[str | int] = []
    node = data
    for part in loc[:-1] if keyed else loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
    if keyed and loc:
        path.append(loc[-1])
    return tuple(path)


def _message(path: KeyPath, error: ErrorDetails) -> str:
    kind = error["type"]
    where = _where(path[:-1]) if kind in ("extra_forbidden", "missing") else _where(path)
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        if not plausible_key([key]):
            # A line of another file (/etc/shadow), a secret where a key goes: not copied into
            # a terminal or a CI log.
            return _prefixed(
                where, "a key that is no field's name (not shown: is this a rule test file?)"
            )
        # The hint is a field of the mapping the key is in: a field of another part of the
        # file (`alerts` of a notification, at the top) is no hint, least of all for itself.
        here = _fields_at(path[:-1]) or FIELD_NAMES
        others = [name for name in here if name != key]
        hint = difflib.get_close_matches(key, others, n=1, cutoff=0.75)
        suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        return _prefixed(where, f"unknown field {key!r}{suffix}")
    if kind == "missing":
        return _prefixed(where, f"missing required field {str(path[-1])!r}")
    if (shape := shape_message(error, _SPEC_FIELDS)) is not None:
        return _prefixed(where, shape)
    message = error["msg"].removeprefix("Value error, ")
    return _prefixed(where, message)


def _fields_at(path: Sequence[str | int]) -> set[str]:
    """The field names of the spec model(s) at ``path`` in a test file (more than one where a
    union allows several); empty when the path leads to none."""
    models: list[type[BaseModel]] = [TestFileSpec]
    for part in path:
        if isinstance(part, int):
            continue  # the item of a list: its annotation was unwrapped with the field's
        found: list[type[BaseModel]] = []
        for model in models:
            for name, field in model.model_fields.items():
                if part in (name, field.alias):
                    found.extend(_models_in(field.annotation))
        models = found
    return {(f.alias or name) for model in models for name, f in model.model_fields.items()}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The spec models an annotation holds: itself, or inside a list, tuple, union or
    Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _where(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _prefixed(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message
