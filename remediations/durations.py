"""Durations as rule files write them: ``30s``, ``15m``, ``1h30m``, ``2d``.

The syntax is Prometheus' (units largest first, each at most once, whole numbers), so the
people who write alert rules and remediation rules use one notation. Pure. Lives in
``remediations`` so that action params and the receiver share it (``receiver.durations``
re-exports it).
"""

from __future__ import annotations

import functools
import math
import re

from remediations.visible_text import shown

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
# Digits are ASCII, as in Prometheus' [0-9]: Python's \d would also take other scripts' digits.
_PATTERN = re.compile(
    r"(?:(?P<w>[0-9]+)w)?(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m(?!s))?"
    r"(?:(?P<s>[0-9]+)s)?(?:(?P<ms>[0-9]+)ms)?",
    re.ASCII,
)
# What a unit-less number looks like, as text (YAML or a variable) or as Python reads it.
_NUMBER = re.compile(r"[0-9_]*\.?[0-9_]+(?:[eE][+-]?[0-9]+)?", re.ASCII)

_UNITS_HELP = "units w, d, h, m, s, ms, largest first"
_HELP = f"expected a duration like 30s, 15m, 1h30m or 2d ({_UNITS_HELP})"


def parse_duration(text: object) -> float:
    """Seconds in ``text``, Prometheus' notation: ``30s``, ``1h30m``. ASCII digits only, no
    blanks around it. Raises ValueError naming the bad input, why, and the accepted form; a
    unit-less number (``30``, ``1e3``, YAML's ``60``) is refused: seconds or minutes?
    """
    if not isinstance(text, str):
        if isinstance(text, float) and not math.isfinite(text):
            # JSON's 1e999 and YAML's .inf read as infinity: "inf is not a duration" quoted
            # what the sender never wrote.
            raise ValueError(
                f"a number too large to hold, or not a number, is no duration; {_HELP}"
            )
        if isinstance(text, int | float) and not isinstance(text, bool):
            raise ValueError(_no_unit(text))
        raise ValueError(f"{shown(text)} is not a duration; {_HELP}")
    match = _PATTERN.fullmatch(text)
    if not text or match is None:
        raise ValueError(_why_not(text))
    return sum(float(match[unit]) * factor for unit, factor in _UNITS if match[unit] is not None)


def _why_not(text: str) -> str:
    if any(c.isdigit() and not c.isascii() for c in text):
        return f"{shown(text)} is not a duration: write its digits as ASCII 0-9; {_HELP}"
    if text.strip() != text and text.strip():
        return f"{shown(text)} is not a duration: remove the blanks around it; {_HELP}"
    if text.startswith("-"):
        return f"{shown(text)} is not a duration: a duration cannot be negative; {_HELP}"
    if _NUMBER.fullmatch(text):
        return _no_unit(text)
    return f"{shown(text)} is not a duration; {_HELP}"


def _no_unit(number: object) -> str:
    text = str(number)
    plain = text.isascii() and text.isdigit() and len(text) <= 12
    example = f"{text}s or {text}m" if plain else "30s or 30m"
    needs = f"a number needs a unit, e.g. {example} ({_UNITS_HELP})"
    return f"{shown(number)} is not a duration: {needs}"


@functools.lru_cache(maxsize=256)
def format_duration(seconds: float) -> str:
    """The shortest rule-file spelling of ``seconds`` (``5400`` -> ``1h30m``), for messages.
    ValueError for a negative duration. Cached: the engine spells a rule's windows in the
    reasons of every event's plan, and the durations in rules are few."""
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
