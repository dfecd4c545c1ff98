"""Query parameters: what every route refuses (``check_query``: U+0000, which PostgreSQL's text
cannot hold, a %-escape of bytes that are not UTF-8, and a parameter given twice), ``since``
and ``limit`` as every route reads them, and those of ``GET /api/v1/runs``, checked and turned
into store filters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from receiver.alertmanager import GREGORIAN_CYCLE
from receiver.durations import parse_duration
from receiver.model import RunOutcome
from receiver.store import BadCursor, decode_cursor
from receiver.text import has_lone_surrogate
from remediations.numerals import is_whole_number
from remediations.targets import TargetError, parse_target_key, quoted, target_kind

__all__ = [
    "DEFAULT_RUNS_LIMIT",
    "MAX_RUNS_LIMIT",
    "BadParameter",
    "bounded_duration",
    "check_query",
    "choice",
    "limit_param",
    "parse_since",
    "run_filters",
    "run_id_param",
    "text_param",
    "unknown_parameter",
]

MAX_RUNS_LIMIT = 500
DEFAULT_RUNS_LIMIT = 50


class BadParameter(Exception):
    """A query parameter the caller must fix; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


# The most of a parameter's name an answer repeats: a query may be as long as the request line
# (8 KiB), and a name or value echoed whole drowns the reason. Values are echoed by ``quoted``.
_NAME_MAX = 80


def _name(name: str) -> str:
    return name if len(name) <= _NAME_MAX else name[: _NAME_MAX - 3] + "..."


def unknown_parameter(name: str) -> BadParameter:
    """The error for a parameter the route does not take, its name cut at 80 characters."""
    return BadParameter(_name(name), f"unknown parameter {quoted(name)}")


def check_query(query: Mapping[str, str], raw: str = "") -> None:
    """Raises BadParameter naming the first parameter whose name or value holds U+0000 (the
    store's text cannot hold it, and no filter means it), whose %-escapes decode to bytes that
    are not UTF-8 (``_check_utf8``), or that is given more than once (``?limit=5&limit=500``:
    which one counts would be a guess, and no route takes a list). ``query`` as aiohttp read
    it (``query.items()`` lists each occurrence), ``raw`` the query string as sent
    (``request.rel_url.raw_query_string``). Every route's query passes here."""
    if "%" in raw:
        _check_utf8(raw)
    seen: set[str] = set()
    for name, value in query.items():
        if "\x00" in name or "\x00" in value:
            shown = _name(name.replace("\x00", "\\x00"))
            raise BadParameter(shown, f"{shown} must not contain U+0000 (NUL)")
        if name in seen:
            raise BadParameter(_name(name), f"{_name(name)} is given more than once: give it once")
        seen.add(name)


def _check_utf8(raw: str) -> None:
    """BadParameter naming the parameter of ``raw`` (a query string as sent) whose %-escapes
    decode to bytes that are not UTF-8 (``rule=caf%e9``, from a page read as latin-1), or
    ``query`` when its name does. aiohttp reads each such byte as U+FFFD: the filter matched
    nothing (200, an empty list) and an error echoed "caf\ufffd", a value nobody sent."""
    # surrogateescape keeps each byte that is not UTF-8 as a lone surrogate, to name its field.
    for name, value in parse_qsl(raw, keep_blank_values=True, errors="surrogateescape"):
        if has_lone_surrogate(name + value):
            shown = "query" if has_lone_surrogate(name) else _name(name)
            raise BadParameter(shown, f"{shown} is not valid UTF-8 once its %-escapes are decoded")


def limit_param(
    query: Mapping[str, str], *, default: int = DEFAULT_RUNS_LIMIT, maximum: int = MAX_RUNS_LIMIT
) -> int:
    """The page size ``limit`` (``default`` when absent): an integer in 1..``maximum``, else
    BadParameter naming ``limit``. Every route that pages reads it here."""
    text = query.get("limit")
    if text is None:
        return default
    try:
        # int() also takes other scripts' digits, `_` and blanks, which no caller means.
        if not is_whole_number(text):
            raise ValueError(text)
        value = int(text)  # ValueError past Python's 4,300 digits
    except ValueError:
        raise BadParameter("limit", f"limit must be an integer, got {quoted(text)}") from None
    if not 1 <= value <= maximum:
        raise BadParameter("limit", f"limit must be between 1 and {maximum}")
    return value


def choice(
    query: Mapping[str, str], name: str, choices: Iterable[str], default: str | None = None
) -> str | None:
    """The value of the enumerated parameter ``name`` (``default`` when absent), one of
    ``choices``. Every route checks its enumerated parameters here, so each refuses an unknown
    value the same way: BadParameter naming the parameter and listing the allowed values."""
    value = query.get(name)
    if value is None:
        return default
    allowed = list(choices)
    if value not in allowed:
        raise BadParameter(name, f"unknown {name} {quoted(value)}; one of {', '.join(allowed)}")
    return value


def text_param(query: Mapping[str, str], name: str) -> str | None:
    """The value of the text filter ``name`` (None when absent). An empty or blank one is
    BadParameter naming ``name``: every route reads its text filters here, so none takes
    ``?rule=`` for no filter (listing everything) where another refuses it."""
    value = query.get(name)
    if value is not None and not value.strip():
        raise BadParameter(name, f"{name} must not be empty")
    return value


def run_id_param(query: Mapping[str, str], name: str) -> str | None:
    """The value of ``name`` (None when absent), a run's id: a uuid. Anything else is
    BadParameter naming ``name``: the store would refuse it as a DataError, a 500."""
    value = query.get(name)
    if value is None:
        return None
    try:
        UUID(value)
    except ValueError:
        raise BadParameter(name, f"{name} must be a run's id (a uuid)") from None
    return value


def bounded_duration(value: object, name: str, max_s: float, max_text: str) -> float:
    """Seconds in ``value``, a duration (``30m``) from 1s to ``max_s`` (written ``max_text``,
    e.g. ``7d``, in the message about ``name``). Raises ValueError for what is no duration, and
    saying the bound for one outside it: a duration the syntax takes but the bound does not
    (``999ms``) is refused, not let through."""
    seconds = parse_duration(value)
    if not 1.0 <= seconds <= max_s:
        raise ValueError(f"{name} must be between 1s and {max_text}, got {quoted(value)}")
    return seconds


def parse_since(text: str, now: datetime) -> datetime:
    """An RFC 3339 timestamp, or a duration (``24h``) meaning that long before ``now``; in UTC.

    Raises ValueError for anything else, for a timestamp without a time zone offset, and for a
    moment outside the years 1 to 9999 in UTC (what the store and Python's datetime hold). Year
    0, which RFC 3339 allows and Go writes, is read as intake reads it
    (``alertmanager.parse_rfc3339``): a moment of year 1 in UTC is taken, an earlier one is
    refused as before the year 1, not as no timestamp.
    """
    text = text.strip()
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        try:
            return (now - timedelta(seconds=seconds)).astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{quoted(text)} reaches back before the year 1") from None
    iso = text.replace("Z", "+00:00").replace("z", "+00:00")
    year_0 = iso.startswith("0000")
    if year_0:
        # Python has no year 0; year 400 has the same calendar (a whole Gregorian cycle on).
        iso = "0400" + iso[4:]
    try:
        value = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"{quoted(text)} is neither an RFC 3339 timestamp nor a duration like 24h"
        ) from None
    if value.tzinfo is None:
        raise ValueError(f"{quoted(text)} has no time zone offset (add Z or +00:00)")
    try:
        return value.astimezone(UTC) - (GREGORIAN_CYCLE if year_0 else timedelta(0))
    except OverflowError:
        raise ValueError(f"{quoted(text)} is outside the years 1 to 9999 once in UTC") from None


def run_filters(query: Mapping[str, str], now: datetime) -> dict[str, Any]:
    """Keyword arguments for ``RunsReader.list_runs``; ``limit`` is always set.

    Raises BadParameter for an unknown or empty parameter, a target that is not
    kind/namespace/name, an unknown outcome, a bad ``since``, a limit outside 1..500 or a
    cursor that is not a page's ``next_cursor`` (checked whole here, so that the store is never
    handed one it cannot bind).
    """
    allowed = {"alertname", "rule", "target", "outcome", "since", "limit", "cursor"}
    for name in query:
        if name not in allowed:
            raise unknown_parameter(name)
    filters: dict[str, Any] = {}
    for name in ("alertname", "rule", "target", "cursor"):
        value = text_param(query, name)
        if value is not None:
            filters[name] = value
    target = filters.get("target")
    if target is not None:
        try:
            parsed = parse_target_key(target)
        except TargetError as exc:
            raise BadParameter(
                "target", f"{exc}: use kind/namespace/name (Kubernetes) or kind/name"
            ) from None
        namespaced = target_kind(parsed.kind).namespaced
        if not parsed.name or (namespaced and not parsed.namespace):
            raise BadParameter("target", "target must be kind/namespace/name or kind/name")
        if not namespaced and parsed.name.startswith("/"):
            # `HttpEndpoint//hook` (an empty namespace) matched nothing, silently.
            bare = parsed.name.lstrip("/") or "name"
            raise BadParameter(
                "target", f"a {parsed.kind} has no namespace: write {parsed.kind}/{bare}"
            )
        filters["target"] = parsed
    cursor = filters.get("cursor")
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except BadCursor as exc:
            raise BadParameter("cursor", str(exc)) from None
    outcome = choice(query, "outcome", (o.value for o in RunOutcome))
    if outcome is not None:
        filters["outcome"] = RunOutcome(outcome)
    since = query.get("since")
    if since is not None:
        try:
            filters["since"] = parse_since(since, now)
        except ValueError as exc:
            raise BadParameter("since", str(exc)) from None
    limit = limit_param(query)
    filters["limit"] = limit
    return filters
