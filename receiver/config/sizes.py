"""Size settings (``http.max_body_bytes``): bytes from ``16777216``, ``16MiB`` or ``20MB``,
within bounds said as sizes. Pure."""

from __future__ import annotations

import re

from receiver.text import shown

__all__ = ["BODY_BYTES_BOUNDS", "GIB", "KIB", "MIB", "parse_size", "size", "spell_size"]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
# http.max_body_bytes: a body is read whole into memory, so at most 1GiB; under 1KiB no
# Alertmanager notification fits.
BODY_BYTES_BOUNDS = (KIB, GIB)

# ASCII digits: \d would also take other scripts' digits (Arabic-Indic, fullwidth), which
# int() reads as the same numbers.
_SIZE = re.compile(r"([0-9]+)\s*(b|k|kb|ki|kib|m|mb|mi|mib|g|gb|gi|gib)?", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "ki": KIB,
    "kib": KIB,
    "mi": MIB,
    "mib": MIB,
    "gi": GIB,
    "gib": GIB,
}
# More digits than any size a setting takes: out of range before int() reads them (int()
# refuses more than 4,300 digits with a ValueError of its own). A longer value is quoted cut.
_MAX_DIGITS = 20


def _read(value: str) -> tuple[str, int]:
    """The digits and the unit's factor of a size's text; ValueError saying the forms."""
    m = _SIZE.fullmatch(value.strip())
    if m is None:
        ascii_digits = "write its digits as ASCII 0-9; " if not value.isascii() else ""
        raise ValueError(
            f"{shown(value)} is not a size: {ascii_digits}use bytes, or e.g. 16MiB, 20MB"
        )
    return m.group(1), _SIZE_UNITS[(m.group(2) or "").lower()]


def parse_size(value: str) -> int:
    """Bytes from ``16777216``, ``16MiB``, ``16Mi`` or ``20MB`` (ASCII digits; decimal units
    are powers of 1000, binary ones of 1024). ValueError saying the accepted forms; a number
    of more digits than any size has is refused (``size``) before this reads it."""
    digits, factor = _read(value)
    return int(digits) * factor


def spell_size(n: int) -> str:
    """``n`` bytes in the largest binary unit that divides it: ``1KiB``, ``16MiB``, ``1GiB``,
    ``1000`` (bytes)."""
    for unit, factor in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def size(value: object, bounds: tuple[int, int]) -> object:
    """Bytes from a size setting's ``value`` (text ``parse_size`` reads, or an int: YAML's
    ``max_body_bytes: 4096``) within ``bounds`` (bytes, both ends included); anything else as
    is, for the field's own type check. ValueError naming the value and the bounds as sizes:
    ``'1025MiB' is out of range: give a size between 1KiB and 1GiB``."""
    shortest, longest = bounds
    out_of_range = ValueError(
        f"{shown(value)} is out of range: give a size between {spell_size(shortest)} and "
        f"{spell_size(longest)}"
    )
    if isinstance(value, str):
        if len(_read(value)[0].lstrip("0")) > _MAX_DIGITS:
            raise out_of_range
        n = parse_size(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        return value
    if not shortest <= n <= longest:
        raise out_of_range
    return n
