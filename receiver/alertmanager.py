"""Alertmanager webhook payload, protocol version 4, as pydantic models. Pure: no I/O.

Field names are the JSON names Alertmanager sends, so a payload reads the same in logs, in
Alertmanager's documentation and in code. Timestamps stay the raw strings Alertmanager sent:
idempotency keys use them verbatim, because Python's datetime drops nanoseconds.

Everything accepted here can be stored and indexed: PostgreSQL text and jsonb cannot hold U+0000,
and UTF-8 cannot encode a lone UTF-16 surrogate (``"\\ud800"`` is a valid JSON escape), so both are
replaced with U+FFFD wherever they occur (the alert's fingerprint stays as sent); a timestamp that
leaves years 1-9999 once converted to UTC (year 0 included, which Go writes) reads as the first
or last instant Python can hold (``parse_rfc3339``), its text kept as sent but for a fraction
of more than ``MAX_FRACTION_DIGITS`` digits, cut there. No other text has a length limit: the
store indexes a groupKey or an alertname by its hash (migration 0011), and refusing a
notification loses it (Alertmanager does not retry a 4xx).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from receiver.rfc3339 import (
    EARLIEST,
    GREGORIAN_CYCLE,
    LATEST,
    LONG_FRACTION,
    LONGEST_KEPT,
    MAX_FRACTION_DIGITS,
    parse_rfc3339,
)
from remediations.targets import quoted

__all__ = [
    "EARLIEST",
    "EMPTY_LABEL_NAME",
    "GREGORIAN_CYCLE",
    "INTAKE_TIMEOUT_S",
    "LATEST",
    "LATE_DELIVERY_WINDOW_S",
    "MAX_FIELD_PART",
    "MAX_FRACTION_DIGITS",
    "MAX_PROBLEMS",
    "REPLACEMENT",
    "ZERO_TIME",
    "Alert",
    "Notification",
    "PayloadError",
    "json_problem",
    "parse_notification",
    "parse_rfc3339",
]

# Go's zero time.Time: what every firing alert carries as endsAt.
ZERO_TIME = "0001-01-01T00:00:00Z"

# How late Alertmanager can deliver a notification it built before an alert resolved: one
# flush's context deadline, max(group_interval, 10s) + peer position x peer_timeout, with its
# defaults (5m, 15s) and three replicas (dispatch timeout in cmd/alertmanager/main.go@v0.25.0).
# The default of the setting intake.late_delivery_window (the re-fire rule, README "Re-fires").
# Alertmanager's defaults, not the shipped alertmanager.yml's 1m (deploy/ sets 1m30s for that):
# a window too short acts on late copies of a resolved alert, the worse mistake for a config
# nobody told us about; one too long only delays a re-fire until the next repeat_interval.
LATE_DELIVERY_WINDOW_S = 330.0
# How long a webhook waits for its COMMIT by default (seconds; the setting intake.timeout): well
# under Alertmanager's 10 s minimum notification deadline and its 15 s peer timeout
# (research/alertmanager-protocol.md section 2.2), so a 503 comes back in time to be retried.
INTAKE_TIMEOUT_S = 5.0

# The most problems one 400 lists: a body of 10,000 bad alerts must not answer 10,000 lines.
MAX_PROBLEMS = 20
# The most characters of one part of a problem's field (a label name, for one) shown; longer
# ones end in "...". A label name may be as long as the body, and each of MAX_PROBLEMS problems
# names its own: answered (the first twice) and logged whole, they outweighed the body.
MAX_FIELD_PART = 80


class PayloadError(Exception):
    """A body that is not a valid v4 notification. ``field`` is a dotted path into the JSON and
    ``message`` says what is wrong with it: the first problem. ``problems``: every problem the
    schema found, as (field, message) pairs in the schema's order (a list's items in turn; a
    label map's first bad value only), at most ``MAX_PROBLEMS``; ``more``: whether others were
    left out of them (``_problems``). A body that is not JSON, or not an object, has one
    problem."""

    def __init__(
        self,
        field: str,
        message: str,
        problems: Sequence[tuple[str, str]] = (),
        more: bool = False,
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.problems: tuple[tuple[str, str], ...] = tuple(problems) or ((field, message),)
        self.more = more

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


# Alertmanager re-sends the same few timestamps (every endsAt of a firing alert is the zero
# time, and a group's alerts often share startsAt): each is parsed once. Errors are not cached.
_parse_cached = functools.lru_cache(maxsize=4096)(parse_rfc3339)


def _check_rfc3339(value: str) -> str:
    if len(value) > LONGEST_KEPT and (long := LONG_FRACTION.match(value)):
        value = long["kept"] + value[long.end() :]
    try:
        _parse_cached(value)
    except ValueError as exc:
        # A custom error keeps pydantic's "Value error, " prefix out of the 400 response.
        raise PydanticCustomError("rfc3339", str(exc)) from None
    return value


Timestamp = Annotated[str, AfterValidator(_check_rfc3339)]

# fail_fast: a dict's first bad value is its one problem. Without it, a body of a million label
# values that are no strings made a million errors: gigabytes, and seconds of the event loop,
# to answer a 400 that lists twenty (``_problems``).
Labels = Annotated[dict[str, str], Field(fail_fast=True)]
# What intake answers for an alert's label without a name (``Alert``), and what a rule test
# file's alert with one is told (``receiver.ruletest.spec.AlertSpec``); ``{value}`` is quoted.
EMPTY_LABEL_NAME = "a label has an empty name (value {value}); every label needs a name"
StatusName = Literal["firing", "resolved"]


class Alert(BaseModel):
    """One alert of a notification. Act on these, never on the group's common labels."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: StatusName
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)
    startsAt: Timestamp
    endsAt: Timestamp = ZERO_TIME
    generatorURL: str = ""
    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]

    @field_validator("labels")
    @classmethod
    def _named(cls, labels: Labels) -> Labels:
        # Alertmanager refuses a label without a name when an alert is posted to it
        # (prometheus/common model.LabelName.IsValid, both validation schemes), so no
        # notification of its holds one; a sender that writes one is told so rather than have
        # it stored (a rule's matcher on it is a lint warning: receiver.rules.matcher_lint).
        if "" in labels:
            raise PydanticCustomError("label_name", EMPTY_LABEL_NAME, {"value": quoted(labels[""])})
        return labels

    @property
    def starts_at_datetime(self) -> datetime:
        return parse_rfc3339(self.startsAt)

    @property
    def ends_at_datetime(self) -> datetime | None:
        """None for Go's zero time, which Alertmanager sends for every firing alert."""
        ends = parse_rfc3339(self.endsAt)
        return None if ends == parse_rfc3339(ZERO_TIME) else ends

    @property
    def episode(self) -> tuple[str, str]:
        """(fingerprint, startsAt): a re-fire after resolution gets a new startsAt."""
        return (self.fingerprint, self.startsAt)


class Notification(BaseModel):
    """The body Alertmanager POSTs to a webhook receiver (``webhook.Message``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["4"]
    groupKey: str
    # Alertmanager's uint64 (webhook.Message.TruncatedAlerts): anything past it no sender wrote.
    truncatedAlerts: Annotated[int, Field(ge=0, le=2**64 - 1, strict=True)] = 0
    status: StatusName
    # Alertmanager passes the receiver name through regexp.QuoteMeta: `web.hook` -> `web\.hook`.
    receiver: str
    groupLabels: Labels = Field(default_factory=dict)
    commonLabels: Labels = Field(default_factory=dict)
    commonAnnotations: Labels = Field(default_factory=dict)
    externalURL: str = ""
    # fail_fast: the fast path's refusal costs one bad alert's errors, whatever the body holds;
    # the careful path (``_problems``) then finds the others, up to MAX_PROBLEMS.
    alerts: Annotated[list[Alert], Field(fail_fast=True)]
    # Alertmanager >= 0.32 only; None means an older sender, not "no reason".
    notification_reason: str | None = None
    # Alertmanager >= 0.34 only.
    routeLabels: Labels | None = None


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's json module accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


# The JSON escapes of what the store cannot hold: U+0000, and a UTF-16 surrogate that is not half
# of a pair. Scanned escape by escape from the left, so `\\u0000` (an escaped backslash, then
# the text "u0000") is read as Alertmanager meant it; a pair is matched before its halves.
_ESCAPE = re.compile(
    r"\\(?:(?P<pair>u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?P<bad>u0000|u[dD][89a-fA-F][0-9a-fA-F]{2})"
    r"|.)",
    re.DOTALL,
)
# U+0000's escape in the raw bytes. jiter (the fast path) refuses lone surrogates by itself, but
# would decode U+0000; a false alarm (an escaped backslash before "u0000") only costs the
# careful path. A compiled search: faster than `in` here (0.3 µs for a one-alert body).
_has_nul_escape = re.compile(rb"\\u0000").search
REPLACEMENT = "\ufffd"


def _replace_unstorable(match: re.Match[str]) -> str:
    return "\\ufffd" if match["bad"] else match[0]


# The most names of one object that may be renamed for colliding once replaced: a few at most
# in anything Alertmanager sends; a body crafted with thousands made the renaming take seconds
# of the event loop (each rename walked the earlier ones), stalling every request meanwhile.
MAX_RENAMED_KEYS = 64


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Only used once escapes were replaced: two names that differed only there would now
    # collide, and a dict would silently keep one of them. A 400 would lose the notification's
    # other alerts at every re-send (Alertmanager never retries a 4xx), so both are kept: each
    # later name gets one more U+FFFD until it is a name of its own. Its alert keeps the
    # fingerprint Alertmanager sent, so its identity does not move. A name without U+FFFD cannot
    # be such a collision: sent twice, the last one counts, as everywhere else in JSON here.
    # More than MAX_RENAMED_KEYS collisions in one object is no alert: a 400.
    data: dict[str, Any] = {}
    taken = {name for name, _ in pairs}
    renamed = 0
    for name, value in pairs:
        if name in data and REPLACEMENT in name:
            renamed += 1
            if renamed > MAX_RENAMED_KEYS:
                raise PayloadError(
                    "body",
                    f"more than {MAX_RENAMED_KEYS} names of one object read the same once "
                    "U+0000 and lone surrogates are replaced with U+FFFD",
                )
            while name in taken:  # at most MAX_RENAMED_KEYS more, each time
                name += REPLACEMENT
            taken.add(name)
        data[name] = value
    return data


def json_problem(exc: ValueError | RecursionError) -> str:
    """What ``json.loads`` raised ``exc`` for, in words a sender can act on: where a
    JSONDecodeError is; "nested too deeply" for a RecursionError; the length of an integer
    too long to convert and the limit (Python's own message says to call
    sys.set_int_max_str_digits(), which no sender can); else the error's own message (a NaN
    refused by ``_reject_constant``)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        # Some of json's messages end in "at" already ("Unterminated string starting at").
        problem = exc.msg.removesuffix(" at")
        return f"{problem} at line {exc.lineno} column {exc.colno}"
    if "integer string conversion" in str(exc):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return str(exc)


def _field(loc: tuple[int | str, ...]) -> str:
    """A problem's dotted path (``alerts.0.labels.team``), each part cut at MAX_FIELD_PART
    characters; ``body`` for the body itself."""
    parts = (str(part) for part in loc)
    return (
        ".".join(p if len(p) <= MAX_FIELD_PART else p[: MAX_FIELD_PART - 3] + "..." for p in parts)
        or "body"
    )


def parse_notification(body: bytes) -> Notification:
    """Decode and validate one webhook body. Raises PayloadError naming the first bad field, and
    the others the schema found (``PayloadError.problems``).

    U+0000 and lone UTF-16 surrogates in any string come back replaced with U+FFFD.
    """
    if _has_nul_escape(body) is None:
        try:
            # The fast path: pydantic-core parses and validates the bytes in one pass. Anything
            # it refuses goes through the careful path below, which replaces what the store
            # cannot hold and names any problem precisely.
            notification = Notification.model_validate_json(body)
        except ValidationError:
            pass
        else:
            return notification
    return parse_notification_carefully(body)


def parse_notification_carefully(body: bytes) -> Notification:
    """The path that explains: step by step, so the error names the first bad field (and the
    schema's other problems).

    Replaces the JSON escapes of U+0000 and lone surrogates with U+FFFD before decoding (the
    same length, so positions in error messages stay right).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("body", f"not valid UTF-8 (byte {exc.start})") from None
    replaced = False
    if "\\u" in text:
        cleaned = _ESCAPE.sub(_replace_unstorable, text)
        replaced = cleaned != text
        text = cleaned
    try:
        data = json.loads(
            text,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys if replaced else None,
        )
    except (ValueError, RecursionError) as exc:
        raise PayloadError("body", f"invalid JSON: {json_problem(exc)}") from None
    if not isinstance(data, dict):
        raise PayloadError("body", f"expected a JSON object, got {type(data).__name__}")
    # Checked before the schema so a v3 sender hears about the version, not about field shapes.
    if "version" in data and data["version"] != "4":
        raise PayloadError(
            "version", f"unsupported payload version {quoted(data['version'])}; expected '4'"
        )
    try:
        return Notification.model_validate(data)
    except ValidationError as exc:
        # _problems finds at least this one; should it not, this error's own first problem.
        first = exc.errors(include_url=False)[0]
        problems = _problems(data) or [(_field(first["loc"]), first["msg"])]
    raise PayloadError(
        *problems[0], problems[:MAX_PROBLEMS], more=len(problems) > MAX_PROBLEMS
    ) from None


def _problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) of the problems of ``data`` (a JSON object that is no notification),
    the notification's own fields first, then each alert's in turn: at least one, and up to
    one bad alert past MAX_PROBLEMS (so that a caller can tell that some were left unlisted).
    The search stops there, and a dict or list stops at its first bad item (fail_fast), so the
    work is bounded by the body, not by the problems it holds (a body of 300,000 empty alerts
    made 900,000 errors in one ValidationError: 0.6 GB and seconds of the event loop)."""
    found: list[tuple[str, str]] = []
    alerts = data.get("alerts")
    try:
        # The alerts apart, when they are a list: the notification's fields checked alone.
        Notification.model_validate({**data, "alerts": []} if isinstance(alerts, list) else data)
    except ValidationError as exc:
        found.extend((_field(e["loc"]), e["msg"]) for e in exc.errors(include_url=False))
    # Then the alerts from the first not yet checked, to the next bad one (fail_fast: its
    # errors only), in pydantic-core at its pace: a million good alerts before a bad one are
    # checked at the fast path's cost, not one Python call each.
    start = 0
    while isinstance(alerts, list) and start < len(alerts) and len(found) <= MAX_PROBLEMS:
        try:
            _ALERTS.validate_python(alerts[start:])
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            bad = start + int(errors[0]["loc"][0])
            found.extend((_field(("alerts", bad, *e["loc"][1:])), e["msg"]) for e in errors)
            start = bad + 1
        else:
            break
    return found


_ALERTS: TypeAdapter[list[Alert]] = TypeAdapter(Annotated[list[Alert], Field(fail_fast=True)])
