"""Quantity arithmetic never goes the wrong way: properties over Kubernetes quantity forms.

Every spelling the API server accepts is generated (integers, decimals such as ``0.1`` and
``1.5``, leading-dot fractions, decimal SI suffixes ``n``..``E``, binary ``Ki``..``Ei``,
exponents ``1e3``/``1E-3``), mixed between the current value and the cap (``5G`` against
``4Gi``).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from remediations.kubernetes import quantity
from remediations.kubernetes.quantity import Scaled

DECIMAL_SUFFIXES = ["n", "u", "m", "", "k", "M", "G", "T"]
BINARY_SUFFIXES = ["Ki", "Mi", "Gi", "Ti"]

MANTISSAS = st.one_of(
    st.integers(min_value=0, max_value=99_999).map(str),
    st.builds(
        lambda whole, frac: f"{whole}.{frac}",
        st.integers(min_value=0, max_value=9_999),
        st.integers(min_value=0, max_value=999),
    ),
    st.integers(min_value=1, max_value=999).map(lambda frac: f".{frac}"),
)
QUANTITIES = st.one_of(
    st.builds(lambda m, s: m + s, MANTISSAS, st.sampled_from(DECIMAL_SUFFIXES)),
    st.builds(lambda m, s: m + s, MANTISSAS, st.sampled_from(BINARY_SUFFIXES)),
    st.builds(
        lambda m, e, exp: f"{m}{e}{exp}",
        MANTISSAS,
        st.sampled_from(["e", "E"]),
        st.integers(min_value=-6, max_value=9),
    ),
)
RAISES = st.floats(min_value=1.0001, max_value=10, allow_nan=False)
LOWERS = st.floats(min_value=0.01, max_value=0.9999, allow_nan=False)
RESOURCES = st.sampled_from(["memory", "cpu"])


def value(text: str) -> Decimal:
    """The value the API server would store for ``text`` (nano precision, rounded up)."""
    return quantity.value_of(quantity.canonical(text))


@given(QUANTITIES)
@example("500m")
@example("1.5Gi")
@example("5G")
@example("1e3")
@example("0.1")
@example("100Ki")
@example("1343.750Ki")
def test_canonical_spelling_keeps_the_value_up_to_nano_precision(text: str) -> None:
    canonical = quantity.canonical(text)
    # The API server keeps nano precision and rounds up: never below, less than 1n above.
    assert Decimal(0) <= quantity.value_of(canonical) - quantity.value_of(text) < Decimal("1e-9")
    # Not always the same text again: a binary quantity that is no whole number of Ki is
    # written without a suffix ("1343.750Ki" is "1376000"), which read again is a decimal one
    # ("1376k"), as apimachinery's CanonicalizeBytes writes them. The value is kept, and that
    # spelling is a fixed point.
    again = quantity.canonical(canonical)
    assert quantity.value_of(again) == quantity.value_of(canonical)
    assert quantity.canonical(again) == again
    assert quantity.equal(canonical, again)


@given(QUANTITIES, RAISES, QUANTITIES, RESOURCES)
@example("5G", 1.5, "4Gi", "memory")  # case 05: above the cap already
@example("3", 1.5, "2", "cpu")
@example("4Gi", 1.5, "4Gi", "memory")  # exactly at the cap
@example("4294967296", 1.5, "4Gi", "memory")  # the same value, other spelling
@example("1.5Gi", 2.0, "5G", "memory")
@example("500m", 1.5, "1e0", "cpu")
def test_a_raise_never_lowers_and_never_passes_its_cap(
    current: str, factor: float, cap: str, resource: str
) -> None:
    scaled = quantity.scale(current, factor, cap, resource=resource)
    if value(current) >= value(cap):
        # Nothing to raise: held, with the cap named, and the value untouched.
        assert scaled == Scaled(
            current, f"already at or above the cap {cap}; a raise never lowers it"
        )
    elif value(current) == 0:
        assert scaled.value == current
        assert scaled.held is not None
    else:
        assert scaled.held is None
        assert value(current) < value(scaled.value) <= value(cap)
    assert value(scaled.value) >= value(current)


@given(QUANTITIES, LOWERS, QUANTITIES, RESOURCES)
@example("1Gi", 0.5, "4Gi", "memory")
@example("1.5Mi", 0.9, "1.8Mi", "memory")  # a sub-unit decrease must not round upwards
@example("1001m", 0.999, "2", "cpu")
def test_a_decrease_never_raises_and_stays_under_its_cap(
    current: str, factor: float, cap: str, resource: str
) -> None:
    scaled = quantity.scale(current, factor, cap, resource=resource)
    assert value(scaled.value) <= value(current)
    if scaled.held is None:
        assert value(scaled.value) < value(current)
        assert value(scaled.value) <= value(cap)
    else:
        assert scaled.value == current


@given(QUANTITIES, RAISES, RESOURCES)
def test_a_raise_below_its_cap_moves_by_at_least_the_factor(
    current: str, factor: float, resource: str
) -> None:
    cap = "64Ei" if resource == "memory" else "1E"  # far above anything generated
    scaled = quantity.scale(current, factor, cap, resource=resource)
    if value(current) > 0:
        assert value(scaled.value) >= value(current) * Decimal(str(factor))
        unit = quantity.MEBI if resource == "memory" else quantity.MILLI
        assert value(scaled.value) % unit == 0  # whole MiB / millicores: readable numbers


def test_a_factor_of_one_is_held() -> None:
    assert quantity.scale("5G", 1.0, "8G", resource="memory") == Scaled(
        "5G", "a factor of 1 changes nothing"
    )


@pytest.mark.parametrize(
    ("current", "factor", "cap", "resource", "expected"),
    [
        # The approver of "raise the memory limit" must never be shown 5G -> 4Gi.
        (
            "5G",
            1.5,
            "4Gi",
            "memory",
            Scaled("5G", "already at or above the cap 4Gi; a raise never lowers it"),
        ),
        (
            "3",
            1.5,
            "2",
            "cpu",
            Scaled("3", "already at or above the cap 2; a raise never lowers it"),
        ),
        ("3Gi", 1.5, "4Gi", "memory", Scaled("4Gi")),  # capped, in the cap's spelling
        ("1.5Gi", 2, "5G", "memory", Scaled("3Gi")),
        ("1.5Mi", 0.9, "1.8Mi", "memory", Scaled("1.5Mi", "x0.9 of it is less than one Mi")),
        ("8Gi", 0.5, "2Gi", "memory", Scaled("2Gi")),  # a decrease is still at most its cap
    ],
)
def test_scale_examples(
    current: str, factor: float, cap: str, resource: str, expected: Scaled
) -> None:
    assert quantity.scale(current, factor, cap, resource=resource) == expected


# Arabic-Indic 12Mi, fullwidth 12, Arabic-Indic 3.5Gi, 1e and an Arabic-Indic 3, Oriya 50m.
@pytest.mark.parametrize(
    "text", ["\u0661\u0662Mi", "\uff11\uff12", "\u0663.\u0665Gi", "1e\u0663", "5\u0b66m"]
)
def test_only_ascii_digits_make_a_quantity(text: str) -> None:
    """apimachinery reads '0'..'9' only; \\d and Decimal() also took other scripts' digits,
    so an Arabic-Indic "12Mi" was 12Mi here and a 400 from the API server."""
    with pytest.raises(quantity.QuantityError, match="is not a Kubernetes quantity"):
        quantity.parse(text)
