"""What happened, read back from the store, against what a test expects; one ``Failure`` per
difference, at the line of the key that states the expectation.

``runs`` and ``approvals`` are complete lists, in the order the runs were created (by time, then
by the alert that arrived first, then by the rule's place in the rule files) and the approvals
asked for: an unexpected extra run fails the test as surely as a missing one. Within an item,
only the keys given are compared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from receiver.audit_folds import unfold
from receiver.durations import format_duration
from receiver.model import ApprovalRecord
from receiver.rules.yaml_lines import KeyPath
from receiver.ruletest.spec import ApprovalExpect, ExpectSpec, RunExpect, SkipExpect, StepExpect
from receiver.store import RunRecord, StepRecord, Store
from receiver.store.announcements import ANNOUNCED

__all__ = ["Failure", "Observed", "Reader", "check", "observe"]


@dataclass(frozen=True, slots=True)
class Failure:
    """One expectation that did not hold, or a timeline entry that could not be played."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Skip:
    """Why an event of an alert led to nothing: its fingerprint, the rule (None: every rule),
    the reason, and when the event arrived."""

    fingerprint: str
    rule: str | None
    reason: str
    received_at: datetime | None


@dataclass(frozen=True, slots=True)
class Observed:
    """The runs (with their steps), approvals and skips in the store, in their orders."""

    runs: Sequence[RunRecord]
    approvals: Sequence[ApprovalRecord]
    skips: Sequence[Skip] = ()
    # Run id -> the moments announced for it (its ``run.announced`` audit rows), in order.
    announced: Mapping[str, Sequence[str]] = field(default_factory=dict)


async def observe(
    store: Store, rule_order: Mapping[str, int], alert_order: Mapping[str, int]
) -> Observed:
    """Everything the store holds about runs and approvals now. Runs are ordered by when they
    were created, then by the alert (in the order the test declares its alerts: the alerts of
    one notification are processed in the order intake stores them, by fingerprint, which a
    reader cannot guess), then by the rule's place in the rule files."""
    listed, _ = await store.list_runs(limit=500)
    runs = [run for r in listed if (run := await store.get_run(r.id)) is not None]
    runs.sort(
        key=lambda r: (
            r.created_at,
            alert_order.get(r.fingerprint, len(alert_order)),
            r.event_id or 0,
            rule_order.get(r.rule, len(rule_order)),
        )
    )
    approvals = await store.list_approvals(limit=500)
    approvals.sort(key=lambda a: (a.requested_at, a.id))
    events, _ = await store.list_events(limit=500)
    events.reverse()  # oldest first
    skips = [
        Skip(e["fingerprint"], None, e["settled_reason"], e["received_at"])
        for e in events
        if e["settled_reason"]
    ]
    skips += [
        Skip(e["fingerprint"], s.get("rule"), s["reason"], e["received_at"])
        for e in events
        for s in e["skips"]
    ]
    announced = {
        run.id: [
            str(data.get("event"))
            for row in await store.audit_entries(run.id)
            if "data_unreadable" not in row  # only an edit of the table: nothing announced
            # A refused run's run.created row holds its announcement (receiver.audit_folds).
            for kind, data in unfold(row["kind"], row["data"])
            if kind == ANNOUNCED
        ]
        for run in runs
    }
    return Observed(runs, approvals, skips, announced)


@dataclass(frozen=True, slots=True)
class Reader:
    """How a check names things: the line of a key path, the alert behind a fingerprint, the
    offset of a time."""

    line: Callable[[KeyPath], int]
    file: str
    alert_of: Mapping[str, str]
    start: datetime

    def offset(self, at: datetime | None) -> str:
        if at is None:
            return "-"
        seconds = (at - self.start).total_seconds()
        return format_duration(seconds) if seconds >= 0 else f"-{format_duration(-seconds)}"

    def fail(self, path: KeyPath, message: str) -> Failure:
        return Failure(self.file, self.line(path), message)


def check(expect: ExpectSpec, path: KeyPath, observed: Observed, reader: Reader) -> list[Failure]:
    """Every difference between ``expect`` (at ``path`` in the file) and ``observed``."""
    failures: list[Failure] = []
    when = _when(expect)
    if expect.no_runs is not None and observed.runs:
        listing = _listing([_describe_run(r, reader) for r in observed.runs])
        failures.append(
            reader.fail(
                (*path, "no_runs"),
                f"{when}: expected no runs, found {len(observed.runs)}:{listing}",
            )
        )
    if expect.runs is not None:
        failures += _check_runs(expect.runs, (*path, "runs"), observed, reader, when)
    if expect.approvals is not None:
        failures += _check_approvals(expect.approvals, (*path, "approvals"), observed, reader, when)
    for index, skip in enumerate(expect.skips or ()):
        failures += _check_skip(skip, (*path, "skips", index), observed, reader, when)
    return failures


def _when(expect: ExpectSpec) -> str:
    return "at the end" if expect.at is None else f"at {format_duration(expect.at)}"


def _listing(lines: Sequence[str]) -> str:
    return "".join(f"\n    {i}. {line}" for i, line in enumerate(lines, 1)) if lines else " none"


# -- runs ------------------------------------------------------------------------------------


def _check_runs(
    expected: Sequence[RunExpect],
    path: KeyPath,
    observed: Observed,
    reader: Reader,
    when: str,
) -> list[Failure]:
    runs = observed.runs
    if len(expected) != len(runs):
        listing = _listing([_describe_run(r, reader) for r in runs])
        return [
            reader.fail(
                path, f"{when}: expected {len(expected)} run(s), found {len(runs)}:{listing}"
            )
        ]
    failures: list[Failure] = []
    for index, (want, run) in enumerate(zip(expected, runs, strict=True)):
        item: KeyPath = (*path, index)
        name = f"{when}: run {index + 1} ({_describe_run(run, reader)})"
        failures += _check_run(want, run, observed.announced.get(run.id, ()), item, name, reader)
    return failures


def _check_run(
    want: RunExpect,
    run: RunRecord,
    announced: Sequence[str],
    path: KeyPath,
    name: str,
    reader: Reader,
) -> list[Failure]:
    failures: list[Failure] = []

    def compare(key: str, expected: object, actual: object) -> None:
        if expected is not None and expected != actual:
            failures.append(
                reader.fail((*path, key), f"{name}: {key}: expected {expected}, got {actual}")
            )

    compare("rule", want.rule, run.rule)
    compare("target", want.target, run.target.key)
    compare("alert", want.alert, reader.alert_of.get(run.fingerprint, run.fingerprint))
    compare("outcome", want.outcome, str(run.outcome))
    if want.verify_result is not None:
        actual = run.verify_result.value if run.verify_result else "none (not decided)"
        compare("verify_result", want.verify_result, actual)
    if want.refused_by is not None:
        compare("refused_by", want.refused_by, run.refusal_guard or f"nothing ({run.outcome})")
    if want.reason is not None:
        why = " / ".join(x for x in (run.refusal_reason, run.error) if x)
        if want.reason not in why:
            failures.append(
                reader.fail(
                    (*path, "reason"),
                    f"{name}: reason: expected it to say {want.reason!r}, it says {why!r}",
                )
            )
    if want.announced is not None and list(want.announced) != list(announced):
        failures.append(
            reader.fail(
                (*path, "announced"),
                f"{name}: announced: expected {list(want.announced)}, got {list(announced)}",
            )
        )
    for key, phase in (("steps", "run"), ("on_resolved", "resolve"), ("on_failed", "on_failed")):
        steps_wanted = getattr(want, key)
        if steps_wanted is not None:
            steps = [s for s in run.steps if s.phase == phase]
            failures += _check_steps(steps_wanted, steps, (*path, key), f"{name}: {key}", reader)
    return failures


def _check_steps(
    expected: Sequence[StepExpect],
    steps: Sequence[StepRecord],
    path: KeyPath,
    name: str,
    reader: Reader,
) -> list[Failure]:
    if len(expected) != len(steps):
        listing = _listing([_describe_step(s) for s in steps])
        return [
            reader.fail(
                path, f"{name}: expected {len(expected)} step(s), found {len(steps)}:{listing}"
            )
        ]
    failures: list[Failure] = []
    for index, (want, step) in enumerate(zip(expected, steps, strict=True)):
        where = f"{name}[{index}] ({_describe_step(step)})"
        if want.action != step.action:
            failures.append(reader.fail((*path, index), f"{where}: expected action {want.action}"))
        if want.outcome is not None and want.outcome != step.outcome:
            failures.append(
                reader.fail((*path, index), f"{where}: expected outcome {want.outcome}")
            )
        if want.message is not None and want.message not in step.message:
            failures.append(
                reader.fail(
                    (*path, index),
                    f"{where}: expected its message to say {want.message!r}, "
                    f"it says {step.message!r}",
                )
            )
    return failures


def _describe_run(run: RunRecord, reader: Reader) -> str:
    alert = reader.alert_of.get(run.fingerprint, run.fingerprint)
    created = reader.offset(run.created_at)
    text = f"{run.rule} on {run.target.key}, alert {alert}, created at {created}: {run.outcome}"
    if run.verify_result is not None and run.outcome != run.verify_result.value:
        text += f" ({run.verify_result.value})"
    if run.refusal_guard:
        text += f" by {run.refusal_guard} ({run.refusal_reason})"
    elif run.error:
        text += f" ({run.error})"
    steps = [_describe_step(s) for s in run.steps]
    return text + (f"; steps: {', '.join(steps)}" if steps else "")


def _describe_step(step: StepRecord) -> str:
    prefix = {"resolve": "on_resolved ", "on_failed": "on_failed "}.get(step.phase, "")
    return f"{prefix}{step.action} {step.outcome}"


# -- approvals -------------------------------------------------------------------------------


def _check_approvals(
    expected: Sequence[ApprovalExpect],
    path: KeyPath,
    observed: Observed,
    reader: Reader,
    when: str,
) -> list[Failure]:
    runs = {run.id: run for run in observed.runs}
    approvals = observed.approvals

    def alert(approval: ApprovalRecord) -> str:
        run = runs.get(approval.run_id)
        return "?" if run is None else reader.alert_of.get(run.fingerprint, run.fingerprint)

    def describe(a: ApprovalRecord) -> str:
        who = f" by {a.decided_by}" if a.decided_by else ""
        return (
            f"{a.action} of {a.rule} on {a.target.key}, alert {alert(a)}, asked at "
            f"{reader.offset(a.requested_at)}: {a.state.value}{who}"
        )

    if len(expected) != len(approvals):
        listing = _listing([describe(a) for a in approvals])
        return [
            reader.fail(
                path,
                f"{when}: expected {len(expected)} approval(s), found {len(approvals)}:{listing}",
            )
        ]
    failures: list[Failure] = []
    for index, (want, approval) in enumerate(zip(expected, approvals, strict=True)):
        name = f"{when}: approval {index + 1} ({describe(approval)})"
        actual = {
            "rule": approval.rule,
            "alert": alert(approval),
            "action": approval.action,
            "state": approval.state.value,
            "by": approval.decided_by,
        }
        for key, value in actual.items():
            expected_value = getattr(want, key)
            if expected_value is not None and expected_value != value:
                failures.append(
                    reader.fail(
                        (*path, index, key),
                        f"{name}: {key}: expected {expected_value}, got {value}",
                    )
                )
    return failures


# -- skips -----------------------------------------------------------------------------------


def _check_skip(
    want: SkipExpect, path: KeyPath, observed: Observed, reader: Reader, when: str
) -> list[Failure]:
    recorded = [s for s in observed.skips if reader.alert_of.get(s.fingerprint) == want.alert]
    for skip in recorded:
        if want.reason in skip.reason and (want.rule is None or want.rule == skip.rule):
            return []
    listing = _listing(
        [
            f"{'every rule' if s.rule is None else s.rule}: {s.reason} "
            f"(event at {reader.offset(s.received_at)})"
            for s in recorded
        ]
    )
    rule = f" for rule {want.rule}" if want.rule else ""
    return [
        reader.fail(
            path,
            f"{when}: expected alert {want.alert} skipped{rule} saying {want.reason!r}; "
            f"its skips:{listing}",
        )
    ]
