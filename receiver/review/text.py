"""How times, durations and recorded values are written in the review (pages and reports)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from receiver.timestamps import utc_strftime
from receiver.unreadable import UnreadableTime, unreadable_text

__all__ = [
    "at_text",
    "duration_text",
    "iso",
    "pretty",
    "target_text",
    "unreadable_text",
    "when_text",
]


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC to the microsecond, the form the JSON report uses; None stays None; a
    time edited outside Python's years as stored (``stored_times``)."""
    if isinstance(value, UnreadableTime):
        return value.stored
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def at_text(value: datetime | None) -> str:
    """A time for people: UTC, to the second (``2026-11-25 10:00:05 UTC``); '' for None; a
    time edited outside Python's years as stored, said unreadable (``stored_times``)."""
    if value is None:
        return ""
    if isinstance(value, UnreadableTime):
        return value.shown
    return utc_strftime(value, "%Y-%m-%d %H:%M:%S UTC")


def when_text(value: str | None) -> str:
    """An RFC 3339 text of the report's data as ``at_text`` writes it; '' for None or ''; a
    text that is no time (one edited out of Python's years is the report's stored text of it,
    ``iso``) as it is."""
    if not value:
        return ""
    try:
        return at_text(datetime.fromisoformat(value))
    except ValueError:
        return value


def duration_text(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h03m``, ``3d04h``; sub-second values as ``0.4s``; '' for None."""
    if seconds is None:
        return ""
    if seconds < 0:
        return "-" + duration_text(-seconds)
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def pretty(value: Any) -> str:
    """A recorded value (before, after, params) as indented JSON; '' for nothing."""
    if value is None or (isinstance(value, Mapping | list) and not value):
        return ""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def target_text(kind: str, namespace: str, name: str) -> str:
    """``Deployment shop/api``; ``PostgresDatabase orders`` for a target without a namespace."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
