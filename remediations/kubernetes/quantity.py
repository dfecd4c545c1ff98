"""Kubernetes resource quantities ("512Mi", "1.5", "250m", "4G"): parse, scale, format.

Formatting follows the API server's canonical form (apimachinery ``resource.Quantity``), so a
value we compute is byte-for-byte what a later read returns: binary-suffixed input stays binary
(largest of Ki..Ei with an integer mantissa), everything else is decimal SI (largest of n..E with
an integer mantissa). Pure; no I/O.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

_BINARY: dict[str, int] = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL: dict[str, int] = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_SUFFIXES = "|".join(sorted((s for s in [*_BINARY, *_DECIMAL] if s), key=len, reverse=True))
_QUANTITY = re.compile(
    rf"^(?P<num>\+?(?:\d+(?:\.\d*)?|\.\d+))(?:(?P<suffix>{_SUFFIXES})|[eE](?P<exp>[+-]?\d+))?$"
)
_NANO = Decimal("1e-9")
MEBI = Decimal(2**20)
MILLI = Decimal("0.001")


class QuantityError(ValueError):
    """Text that is not a Kubernetes quantity, or a negative one."""


class Format(StrEnum):
    """How a quantity is spelled: binary suffixes (Ki, Mi, ...) or decimal SI (m, k, M, ...)."""

    BINARY = "binary"
    DECIMAL = "decimal"


def parse(text: str) -> tuple[Decimal, Format]:
    """``"1.5Gi"`` -> (Decimal(1610612736), BINARY). Negative quantities are rejected."""
    match = _QUANTITY.match(text.strip())
    if not match:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity (e.g. 512Mi, 1.5Gi, 250m, 2)")
    number = Decimal(match["num"])
    suffix, exp = match["suffix"], match["exp"]
    if suffix in _BINARY:
        return number * (2 ** _BINARY[suffix]), Format.BINARY
    if exp is not None:
        return number.scaleb(int(exp)), Format.DECIMAL
    return number.scaleb(_DECIMAL[suffix or ""]), Format.DECIMAL


def value_of(text: str) -> Decimal:
    """The value of ``text`` (``"1Ki"`` -> 1024). Raises QuantityError."""
    return parse(text)[0]


def format_quantity(value: Decimal, fmt: Format = Format.DECIMAL) -> str:
    """The API server's canonical spelling of ``value`` in ``fmt``."""
    if value < 0:
        raise QuantityError(f"negative quantity {value}")
    # The API server keeps nano precision at most and rounds up.
    value = value.quantize(_NANO, rounding=ROUND_CEILING) if value % _NANO else value
    if fmt is Format.BINARY and value >= 1024 and value == value.to_integral_value():
        n = int(value)
        suffix = ""
        for name, power in _BINARY.items():
            if n % (2**power) == 0:
                suffix = name
        if not suffix:
            return str(n)
        return f"{n // 2 ** _BINARY[suffix]}{suffix}"
    if value == 0:
        return "0"
    for name, power in sorted(_DECIMAL.items(), key=lambda kv: -kv[1]):
        mantissa = value.scaleb(-power)
        if mantissa == mantissa.to_integral_value():
            return f"{int(mantissa)}{name}"
    raise AssertionError("unreachable: nano precision always yields an integer mantissa")


def canonical(text: str) -> str:
    """``"0.5Gi"`` -> ``"512Mi"``, ``"1000m"`` -> ``"1"``: how the API server stores ``text``."""
    value, fmt = parse(text)
    return format_quantity(value, fmt)


def equal(a: str | None, b: str | None) -> bool:
    """Same value however spelled (``"1Gi"`` == ``"1024Mi"``); None equals only None."""
    if a is None or b is None:
        return a is b
    return value_of(a) == value_of(b)


def scale(current: str, factor: float, cap: str, *, resource: str) -> str:
    """``current * factor``, rounded up to a whole unit (1Mi of memory, 1m of cpu), at most ``cap``.

    Rounding up keeps the numbers readable and never shrinks a requested increase to nothing.
    """
    unit = MEBI if resource == "memory" else MILLI
    fmt = Format.BINARY if resource == "memory" else Format.DECIMAL
    scaled = (value_of(current) * Decimal(str(factor)) / unit).to_integral_value(ROUND_CEILING)
    result = scaled * unit
    cap_value, cap_fmt = parse(cap)
    if result >= cap_value:
        return format_quantity(cap_value, cap_fmt)
    return format_quantity(result, fmt)
