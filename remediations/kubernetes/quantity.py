"""Kubernetes resource quantities ("512Mi", "1.5", "250m", "4G"): parse, scale, format.

Formatting follows the API server's canonical form (apimachinery ``resource.Quantity``), so a
value we compute is byte-for-byte what a later read returns: binary-suffixed input stays binary
(largest of Ki..Ei with an integer mantissa), everything else is decimal SI (largest of n..E with
an integer mantissa). Pure; no I/O.
"""

from __future__ import annotations

import decimal
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

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
# ASCII digits, as apimachinery's parseQuantityString reads them ('0'..'9'): \d would also
# take other scripts' digits (Arabic-Indic, fullwidth), and Decimal() reads those as numbers.
_QUANTITY = re.compile(
    rf"(?P<num>\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    rf"(?:(?P<suffix>{_SUFFIXES})|[eE](?P<exp>[+-]?[0-9]+))?"
)
_NANO = Decimal("1e-9")
# Enough digits for any quantity from 1n to beyond 64Ei exactly (the default context has 28,
# and 64Ei at nano precision needs 29, or the remainder below fails): only the explicit
# rounding to nano precision ever rounds.
_CONTEXT = decimal.Context(prec=60, traps=[decimal.InvalidOperation])
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _exact(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` under ``_CONTEXT``."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with decimal.localcontext(_CONTEXT):
            return fn(*args, **kwargs)

    return wrapper


MEBI = Decimal(2**20)
MILLI = Decimal("0.001")


class QuantityError(ValueError):
    """Text that is not a Kubernetes quantity, or a negative one."""


class Format(StrEnum):
    """How a quantity is spelled: binary suffixes (Ki, Mi, ...) or decimal SI (m, k, M, ...)."""

    BINARY = "binary"
    DECIMAL = "decimal"


@_exact
def parse(text: str) -> tuple[Decimal, Format]:
    """``"1.5Gi"`` -> (Decimal(1610612736), BINARY). Negative quantities are rejected."""
    match = _QUANTITY.fullmatch(text.strip())
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


@_exact
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


def fraction_of_a_byte(text: str) -> str | None:
    """Why ``text`` cannot be an amount of memory, or None: memory is counted in whole bytes,
    and ``m`` is milli, so ``"512m"`` is 0.512 bytes (the slip the Kubernetes docs warn of:
    "400m of memory ... is a request for 0.4 bytes"). The API server only warns ("fractional
    byte value"), so a rule would write a limit no container starts under, or a cap no raise
    reaches. None also for a text that is no quantity (``parse`` says why)."""
    try:
        amount = value_of(text)
    except QuantityError:
        return None
    if amount == amount.to_integral_value():
        return None
    stem = text.strip()
    milli = stem.endswith("m")
    return (
        f"{text!r} is a fraction of a byte ({amount.normalize():f} bytes"
        + ("; m is milli" if milli else "")
        + "): memory is counted in whole bytes, write "
        + (f"{stem[:-1]}Mi or {stem[:-1]}M" if milli else "e.g. 512Mi")
    )


def binary_cpu(text: str) -> str | None:
    """Why ``text`` should not be an amount of cpu, or None: a binary suffix (``Ki`` .. ``Ei``)
    multiplies by a power of 1024, so ``"1Ki"`` is 1024 cores. The API server takes it as
    that, without a word (apimachinery's Quantity has no unit, and the cpu of a container is
    only checked to be non-negative), so a rule would set or cap a limit no node can give
    nor any container reach: a slip for ``1``, ``1k`` or a memory field. Cpu is counted in
    cores and millicores, as Kubernetes writes it. None also for a text that is no quantity
    (``parse`` says why)."""
    try:
        amount, fmt = parse(text)
    except QuantityError:
        return None
    if fmt is not Format.BINARY:
        return None
    return (
        f"{text!r} is {amount.normalize():f} cores (a binary suffix multiplies by a power of "
        "1024): cpu is counted in cores and millicores, write e.g. 2, 1.5 or 500m"
    )


def equal(a: str | None, b: str | None) -> bool:
    """Same value however spelled (``"1Gi"`` == ``"1024Mi"``); None equals only None."""
    if a is None or b is None:
        return a is b
    return value_of(a) == value_of(b)


@dataclass(frozen=True, slots=True)
class Scaled:
    """What ``scale`` makes of a quantity: the ``value`` to set, or, when the value must not
    move, ``current`` unchanged and ``held`` saying why (naming the cap when it is the cap),
    worded to follow the field, e.g. "memory limit 5G unchanged: <held>"."""

    value: str
    held: str | None = None


@_exact
def scale(current: str, factor: float, cap: str, *, resource: str) -> Scaled:
    """``current * factor`` rounded to a whole unit (1Mi of memory, 1m of cpu), bounded by ``cap``.

    The factor gives the direction, and the result never goes the other way: a raise
    (factor > 1) ends in (current, cap], and when current is already at or above the cap it is
    held, never lowered to the cap; a decrease (factor < 1) ends below current (and at most
    ``cap``), and is held when it would be less than one unit. A raise rounds up, so a small
    factor still moves by a unit. Raises QuantityError for a text that is not a quantity.
    """
    unit = MEBI if resource == "memory" else MILLI
    fmt = Format.BINARY if resource == "memory" else Format.DECIMAL
    # Both as the API server stores them (nano precision, rounded up): what is live, and what
    # a capped write would set.
    current_value = value_of(canonical(current))
    cap_text = canonical(cap)
    cap_value = value_of(cap_text)
    multiplied = current_value * Decimal(str(factor))
    if factor == 1:
        return Scaled(current, "a factor of 1 changes nothing")
    if factor > 1:
        if current_value >= cap_value:
            return Scaled(current, f"already at or above the cap {cap}; a raise never lowers it")
        if current_value == 0:
            return Scaled(current, "0 stays 0 whatever the factor")
        result = (multiplied / unit).to_integral_value(ROUND_CEILING) * unit
        if result >= cap_value:
            return Scaled(cap_text)
        return Scaled(format_quantity(result, fmt))
    # A decrease: rounded up (towards current), so it never overshoots the factor; if that
    # leaves it where it was, it is held rather than rounded away from the factor's direction.
    result = (multiplied / unit).to_integral_value(ROUND_CEILING) * unit
    if cap_value < min(result, current_value):
        return Scaled(cap_text)
    if result >= current_value:
        return Scaled(current, f"x{factor} of it is less than one {_unit_name(resource)}")
    return Scaled(format_quantity(result, fmt))


def _unit_name(resource: str) -> str:
    return "Mi" if resource == "memory" else "millicore"


def request_over_limit(
    live: Mapping[str, Any], patch: Mapping[str, Mapping[str, str]]
) -> str | None:
    """Why a container whose resources are ``live`` (``{"limits": {...}, "requests": {...}}``
    as read) and then ``patch`` (the same shape, only what a step writes) would ask more than
    its limit, e.g. "its memory request would be 2Gi, above its memory limit of 1536Mi"; None
    when every resource the patch touches keeps request <= limit (or has no request or no limit).

    The API server refuses such a template (422, ``ValidateResourceRequirements``: "must be
    less than or equal to memory limit"), so a factor on one of the two, or a value, that
    passes the other is refused in the step's preview instead of after an approval. Raises
    QuantityError for a live text that is not a quantity."""
    touched = {resource for section in patch.values() for resource in section}
    for resource in sorted(touched):
        values: dict[str, str] = {}
        for section in ("requests", "limits"):
            text = (patch.get(section) or {}).get(resource) or (live.get(section) or {}).get(
                resource
            )
            if text is not None:
                values[section] = str(text)
        if len(values) < 2:
            continue
        request, limit = values["requests"], values["limits"]
        if value_of(canonical(request)) > value_of(canonical(limit)):
            return (
                f"its {resource} request would be {request}, above its {resource} limit of "
                f"{limit}, which the API server refuses; not changing it"
            )
    return None
