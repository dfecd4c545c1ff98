"""RFC 3339 timestamps as Alertmanager and Go write and read them. Pure: no I/O.

``parse_rfc3339`` reads the text of a webhook's startsAt and endsAt (``receiver.alertmanager``
checks them with it); the store and the readers read stored text back with it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from remediations.targets import quoted

__all__ = [
    "EARLIEST",
    "GREGORIAN_CYCLE",
    "LATEST",
    "LONGEST_KEPT",
    "LONG_FRACTION",
    "MAX_FRACTION_DIGITS",
    "parse_rfc3339",
]

# Go formats time.Time with RFC3339Nano (up to 9 fraction digits, `Z` or `±hh:mm`) and parses
# a fraction of any length, keeping nanoseconds (src/time/format.go, parseNanoseconds), as RFC
# 3339 allows: a sender other than Alertmanager may write ten digits, and a 400 would lose the
# notification's every alert. RFC 3339 also allows lower-case `t`/`z`. Anything looser (no
# offset, a space, a date only) is rejected, because fromisoformat alone would accept it and
# read it as local time.
_RFC3339 = re.compile(
    r"(?P<main>\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<frac>\d+))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


# The most fraction digits a timestamp keeps as sent; the rest are cut. Go writes at most 9
# (RFC3339Nano) and keeps nanoseconds of any longer fraction it parses, so digits past 9 tell
# no instant from another for Alertmanager, and 64 keep the text of any sender that writes a
# few more. Unbounded, a startsAt of thousands of random digits could not be indexed (a btree
# entry holds at most 2704 bytes: the dedupe key and the run's episode index hold startsAt), so
# its notification, good siblings included, was a 500 on every retry; and every distinct long
# text stayed in _parse_cached.
MAX_FRACTION_DIGITS = 64
# A fraction longer than MAX_FRACTION_DIGITS, where only a fraction can begin: after the 19
# characters of the date and time and the dot.
LONG_FRACTION = re.compile(
    r"(?P<kept>.{19}\.\d{" + str(MAX_FRACTION_DIGITS) + r"})\d+", re.ASCII | re.DOTALL
)
LONGEST_KEPT = 19 + 1 + MAX_FRACTION_DIGITS + len("+00:00")


# The first and last instants Python can hold, in UTC: what a timestamp past either end reads as.
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
# 400 Gregorian years, to the day: the calendar repeats after them.
GREGORIAN_CYCLE = timedelta(days=146_097)


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp to an aware datetime, truncating the fraction to µs.

    A time that leaves years 1-9999 once converted to UTC (``9999-12-31T23:59:59-00:01`` is
    10000-01-01T00:00:59Z), which Go and Alertmanager accept, reads as ``LATEST`` or
    ``EARLIEST``: a datetime with that offset makes Python raise OverflowError wherever it is
    compared or converted, so a worker failed on it on every retry (case 11). The store sends
    ``LATEST`` as PostgreSQL's ``infinity``; an endsAt that far ahead is "no end known" anyway.
    Year 0, which Go writes (``time.Time.MarshalJSON`` takes years 0-9999) and Python's
    datetime cannot hold, reads as ``EARLIEST``, or as the instant in UTC when that is in year
    1 (``0000-12-31T23:30:00-01:00`` is 0001-01-01T00:30:00Z). Refusing the notification
    instead lost every alert it carried: Alertmanager does not retry a 4xx, and re-sends the
    same alert with its group.

    Raises ValueError when the text is not RFC 3339 or names an impossible date or time,
    quoting its start (``quoted``: a timestamp may be as long as the body, and the message is
    answered and logged).
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {quoted(value)}")
    frac = match["frac"]
    tz = match["tz"]
    text = match["main"].replace("t", "T")
    if frac:
        # Truncate rather than round: rounding 999999999 ns would carry into the next second.
        text += "." + frac[:6].ljust(6, "0")
    text += "+00:00" if tz in ("Z", "z") else tz
    year_0 = text.startswith("0000")
    if year_0:
        # Go writes year 0 (time.Time.MarshalJSON takes years 0-9999) and Alertmanager
        # forwards it as sent; Python has no year 0. Year 400 has the same calendar (a leap
        # year, 400 years being a whole Gregorian cycle), so read it there and go back.
        text = "0400" + text[4:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a valid RFC 3339 date and time: {quoted(value)}") from None
    if year_0:
        try:
            return parsed.astimezone(UTC) - GREGORIAN_CYCLE
        except OverflowError:  # still in year 0 in UTC
            return EARLIEST
    if parsed.year in (1, 9999):  # only these can leave the range in UTC
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            return LATEST if parsed.year == 9999 else EARLIEST
    return parsed
