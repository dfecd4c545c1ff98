"""Durations as rule files write them: ``30s``, ``15m``, ``1h30m``, ``2d``.

The syntax is Prometheus' (units largest first, each at most once, whole numbers), so the
people who write alert rules and remediation rules use one notation. Pure. Lives in
``remediations`` so that action params and the receiver share it (``receiver.durations``
re-exports it).
"""

from __future__ import annotations

import re

__all__ = ["MAX_DURATION_S", "format_duration", "parse_duration"]

# The longest duration a rule or an action's params may hold: one year. Windows and cooldowns
# become milliseconds in Redis' Lua (a double: exact only below 2**53) and datetimes
# (year 9999 at most); a year is far beyond any remediation's horizon and far from both limits.
MAX_DURATION_S = 365 * 86400.0

_UNITS: tuple[tuple[str, float], ...] = (
    ("w", 7 * 86400.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
)

# One optional group per unit, in order; "m" must not swallow the "m" of "ms", hence (?!s).
_PATTERN = re.compile(
    r"(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?"
    r"(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?"
)

_HELP = "expected a duration like 30s, 15m, 1h30m or 2d (units w, d, h, m, s, ms, largest first)"


def parse_duration(text: object, *, bare_seconds: bool = False) -> float:
    """Seconds in ``text``. Raises ValueError naming the bad input and the accepted form.

    ``bare_seconds``: also take a plain non-negative number of seconds (``90``, ``"1.5"``), as
    settings do; rule files do not, where a unit-less number is more likely a mistake.
    """
    if bare_seconds and not isinstance(text, bool):
        seconds = _bare_seconds(text)
        if seconds is not None:
            if seconds < 0:
                raise ValueError("a duration cannot be negative")
            return seconds
    if not isinstance(text, str):
        # YAML turns a bare `60` into an int; a unit-less number is ambiguous, so say so.
        raise ValueError(f"{text!r} is not a duration; {_HELP}")
    match = _PATTERN.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration; {_HELP}")
    return sum(float(match[unit]) * factor for unit, factor in _UNITS if match[unit] is not None)


def _bare_seconds(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def format_duration(seconds: float) -> str:
    """The shortest rule-file spelling of ``seconds`` (``5400`` -> ``1h30m``), for messages."""
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds}")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit, factor in _UNITS:
        step = round(factor * 1000)
        amount, millis = divmod(millis, step)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
