"""The field types of rule test files: offsets, times, durations, targets, and names that
must be among the known ones (outcomes, guards, states), each with its validator. Pure.

A name that is not known is refused with the closest known one (``did you mean ...?``) or the
list, so a misspelt expectation is an error, never an assertion that cannot hold.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from receiver.alertmanager import EMPTY_LABEL_NAME, parse_rfc3339
from receiver.durations import MAX_DURATION_S, parse_duration
from receiver.guards.policy import REFUSAL_NAMES
from receiver.model import ANNOUNCEMENTS, ApprovalState, RunOutcome, VerifyResult
from remediations.base import Outcome
from remediations.targets import TargetError, parse_target_key, quoted

__all__ = [
    "EARLIEST_START",
    "LATEST_START",
    "MAX_OFFSET_S",
    "STEP_OUTCOMES",
    "ActionOutcomeName",
    "AlertLabels",
    "AnnouncementName",
    "ApprovalStateName",
    "Duration",
    "GuardName",
    "Handles",
    "Offset",
    "RawTime",
    "RunOutcomeName",
    "SignedTime",
    "StepOutcomeName",
    "TargetKey",
    "VerifyResultName",
    "offset_seconds",
    "start_time",
]

# Outcomes a step can be recorded with: the actions' (with the simulator's `simulated`, and
# `interrupted`, which a fixture may script), the pipeline's own (planned or held, never to
# run: receiver.store.steps.NOT_RUN; acting: receiver.store.steps.STARTED), and how an
# approval ended it.
STEP_OUTCOMES = frozenset(
    {o.value for o in Outcome}
    | {"pending", "not_run", "started", "awaiting_approval", "rejected", "expired", "cancelled"}
)


# How far from its start a test's timeline and fixtures may reach, and where the start may be:
# the simulated clock then stays far inside the years a time can hold (1 to 9999), durations
# (a year at most, as the service's settings) included. An offset of 99999999999999999999d
# passed the file check and then failed the test with "OverflowError: date value out of range".
MAX_OFFSET_S = 10 * 365 * 86400.0
EARLIEST_START = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_START = datetime(9000, 1, 1, tzinfo=UTC)
_OFFSET_LIMIT = "an offset in a rule test is at most ten years (3650d)"


def offset_seconds(value: Any, *, signed: bool = False) -> float:
    """An offset from the simulated start in seconds: a duration, or 0, at most
    ``MAX_OFFSET_S`` (ten years) either way. ``signed``: a leading ``-`` means before the
    start (fixture times). Raises ValueError."""
    if value == 0 and not isinstance(value, bool):
        return 0.0
    if signed and isinstance(value, str) and value.strip().startswith("-"):
        return -_within(parse_duration(value.strip()[1:]), MAX_OFFSET_S, _OFFSET_LIMIT, value)
    return _within(parse_duration(value), MAX_OFFSET_S, _OFFSET_LIMIT, value)


def start_time(value: datetime | None) -> datetime | None:
    """A test's ``settings.start``: with its time zone, from ``EARLIEST_START`` to before
    ``LATEST_START``. Raises ValueError."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2026-01-01T09:00:00Z")
    if not EARLIEST_START <= value < LATEST_START:
        raise ValueError(
            f"give a time from {EARLIEST_START.year} to before {LATEST_START.year}, so the "
            "simulated clock stays within the years a time can hold"
        )
    return value


# A time's text starts with its date; no duration or offset does.
_DATE_FIRST = re.compile(r"[0-9]{4}-[0-9]")


def _within(seconds: float, limit_s: float, limit: str, value: Any) -> float:
    if seconds > limit_s:
        raise ValueError(f"{value!r} is too long: {limit}")
    return seconds


def _offset(value: Any) -> float:
    return offset_seconds(value)


def _positive(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    # The service's settings take a year at most (receiver.config): a test under a longer one
    # would test a configuration that cannot run.
    return _within(seconds, MAX_DURATION_S, "a setting's duration is at most a year (365d)", value)


def _one_of(allowed: frozenset[str] | tuple[str, ...], what: str) -> Any:
    def check(value: str) -> str:
        if value not in allowed:
            hint = difflib.get_close_matches(value, list(allowed), n=1, cutoff=0.6)
            if hint:
                raise ValueError(f"unknown {what} {value!r} (did you mean {hint[0]!r}?)")
            raise ValueError(f"unknown {what} {value!r}; one of: {', '.join(sorted(allowed))}")
        return value

    return AfterValidator(check)


def _target(value: str) -> str:
    try:
        return parse_target_key(value).key
    except TargetError as exc:
        raise ValueError(str(exc)) from None


def _time(value: Any) -> Any:
    """An RFC 3339 time as Alertmanager sends it (kept as written), or an offset."""
    if isinstance(value, datetime):  # an explicit `!!timestamp`: YAML reads it itself
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()}: give a time zone, e.g. Z")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    # Text that starts as a date is a time (the rule loader reads no date itself): said to be
    # no RFC 3339 time (`2026-01-01 09:00:00Z`), not "no duration".
    if isinstance(value, str) and _DATE_FIRST.match(value):
        parse_rfc3339(value)  # ValueError names the problem
        return value
    return offset_seconds(value)


def _signed_time(value: Any) -> Any:
    """An RFC 3339 time, or an offset from the start that may be negative (``-10m``)."""
    if isinstance(value, str) and value.strip().startswith("-"):
        return offset_seconds(value, signed=True)
    return _time(value)


def _handles(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Offset = Annotated[float, BeforeValidator(_offset)]
RawTime = Annotated[str | float, BeforeValidator(_time)]
SignedTime = Annotated[str | float, BeforeValidator(_signed_time)]
Duration = Annotated[float, BeforeValidator(_positive)]
Handles = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_handles)]
TargetKey = Annotated[str, AfterValidator(_target)]
GuardName = Annotated[str, _one_of(REFUSAL_NAMES, "guard")]
RunOutcomeName = Annotated[str, _one_of(frozenset(o.value for o in RunOutcome), "run outcome")]
StepOutcomeName = Annotated[str, _one_of(STEP_OUTCOMES, "step outcome")]
ApprovalStateName = Annotated[
    str, _one_of(frozenset(s.value for s in ApprovalState), "approval state")
]
# A scripted step end: what an action can answer (the pipeline's own outcomes are not).
ActionOutcomeName = Annotated[str, _one_of(frozenset(o.value for o in Outcome), "step outcome")]
VerifyResultName = Annotated[
    str, _one_of(frozenset(r.value for r in VerifyResult), "verification result")
]
AnnouncementName = Annotated[str, _one_of(frozenset(a.value for a in ANNOUNCEMENTS), "event")]


def _named(labels: dict[str, str]) -> dict[str, str]:
    # Intake refuses such an alert (Alertmanager never sends one): played, the test failed at
    # its timeline as if the service had a bug, where the file is at fault.
    if "" in labels:
        raise ValueError(EMPTY_LABEL_NAME.format(value=quoted(labels[""])))
    return labels


# An alert's labels: at least one, each with a name.
AlertLabels = Annotated[dict[str, str], Field(min_length=1), AfterValidator(_named)]
