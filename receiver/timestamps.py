"""Times written as text by a ``strftime`` format, in UTC. Pure.

``%Y`` is written with four digits whatever the year: glibc's ``strftime`` writes the year 1
as "1", so the whole-history window (from 0001-01-01) got an incident id that read back as no
incident, a label out of ISO order, and a bound that compared wrong against the rows' text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["shifted", "utc_strftime"]


def shifted(at: datetime, by: timedelta) -> datetime:
    """``at + by``, or the end of Python's range (aware, UTC) that it passes: a time read at
    that end (a stored time edited out of Python's years, ``receiver.unreadable``) moved
    outward is still the end, rather than OverflowError."""
    try:
        return at + by
    except OverflowError:
        return (datetime.max if by > timedelta(0) else datetime.min).replace(tzinfo=UTC)


def utc_strftime(at: datetime, fmt: str) -> str:
    """``at`` (aware) in UTC, written as ``fmt`` (``strftime``), ``%Y`` as four digits."""
    utc = at.astimezone(UTC)
    return utc.strftime(fmt.replace("%Y", f"{utc.year:04d}"))
