"""What an operator is told of a recorded field that cannot be read: a JSON column edited, in
the database, to hold what this service never writes there (``receiver.store.stored_json``
finds them), or a time edited outside Python's years (``UnreadableTime``: the store reads it
through ``receiver.store.stored_times``). One wording for the review, the approval page and a
step taken up again. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Self

__all__ = [
    "PG_INFINITY",
    "PG_NEGATIVE_INFINITY",
    "UnreadableTime",
    "stored_text",
    "time_unreadable",
    "unreadable_text",
]

# PostgreSQL's binary timestamptz infinities (microseconds since 2000-01-01 UTC).
PG_INFINITY = 0x7FFFFFFFFFFFFFFF
PG_NEGATIVE_INFINITY = -0x8000000000000000
# Days from 1970-01-01 to 2000-01-01 (the civil-date arithmetic below counts from 1970).
_EPOCH_DAYS = 10957


def unreadable_text(fields: Mapping[str, str]) -> str:
    """What is said of recorded fields that cannot be read (field -> why: only an edit of the
    table writes such a value), e.g. ``labels cannot be read: it was edited after it was
    written (the stored labels is a JSON list, not an object of strings)``; '' for none."""
    return "; ".join(
        f"{name} cannot be read: it was edited after it was written ({why})"
        for name, why in sorted(fields.items())
    )


class UnreadableTime(datetime):
    """A stored time outside what Python holds: the nearest end of Python's range (UTC), with
    ``stored`` (PostgreSQL's text of it, in UTC: ``20000-01-01 00:00:00+00``, ``infinity``)
    and ``micros`` (its binary value, written back unchanged)."""

    stored: str
    micros: int

    def __new__(cls, micros: int, *fields: Any, **named: Any) -> Self:
        if fields or named:
            # datetime's own methods (``replace``) build their result as type(self)(...): it
            # is a plain datetime, not this stored time.
            return datetime(micros, *fields, **named)  # type: ignore[return-value]
        end = datetime.max if micros > 0 else datetime.min
        self = super().__new__(
            cls, end.year, end.month, end.day, end.hour, end.minute, end.second,
            end.microsecond, tzinfo=UTC,
        )  # fmt: skip
        self.stored = stored_text(micros)
        self.micros = micros
        return self

    @property
    def shown(self) -> str:
        """How a page shows it: ``20000-01-01 00:00:00+00 (cannot be read: edited)``."""
        return f"{self.stored} (cannot be read: edited)"

    def __reduce_ex__(self, protocol: Any) -> Any:
        # datetime's own would copy (deepcopy, dataclasses.asdict) or pickle it as the plain
        # stand-in, losing the stored value.
        return (UnreadableTime, (self.micros,))


def stored_text(micros: int) -> str:
    """PostgreSQL's text of a binary timestamptz (microseconds since 2000-01-01 UTC) in UTC,
    for any value it holds: ``20000-01-01 00:00:00+00``, ``0100-01-01 00:00:00+00 BC``."""
    if micros == PG_INFINITY:
        return "infinity"
    if micros == PG_NEGATIVE_INFINITY:
        return "-infinity"
    days, rest = divmod(micros, 86_400_000_000)
    year, month, day = _civil(days + _EPOCH_DAYS)
    seconds, fraction = divmod(rest, 1_000_000)
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if fraction:
        clock += f".{fraction:06d}".rstrip("0")
    # PostgreSQL has no year 0: astronomical year 0 is 1 BC.
    era = "" if year > 0 else " BC"
    return f"{year if year > 0 else 1 - year:04d}-{month:02d}-{day:02d} {clock}+00{era}"


def _civil(days: int) -> tuple[int, int, int]:
    """The proleptic Gregorian (astronomical year, month, day) ``days`` after 1970-01-01, for
    any integer (H. Hinnant's civil_from_days)."""
    z = days + 719_468
    era, doe = divmod(z, 146_097)
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def time_unreadable(stored: str) -> str:
    """Why a stored time, ``stored`` (timestamptz as text), cannot be read."""
    return f"the stored time {stored} is outside the years 1 to 9999 Python can hold"
