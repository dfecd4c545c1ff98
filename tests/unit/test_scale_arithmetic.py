"""``kubernetes.scale``'s factor arithmetic against exact rational arithmetic.

A rule writes its factor as decimal text (``factor: 1.1``). The count it asks for is that
number times the live count, exactly, rounded up for a raise and down for a lowering. Binary
floating point made 50 x 1.1 = 55.00000000000001, rounded up to 56.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from remediations.kubernetes.scale import ScaleParams

_COUNT = st.integers(min_value=0, max_value=1000)
# What a rule writes (a few decimals), and any float the params model accepts.
_WRITTEN = st.decimals(min_value=Decimal("0.01"), max_value=10, places=3).map(float)
_ANY = st.floats(min_value=0.0001, max_value=10, allow_nan=False, allow_infinity=False)
_FACTOR = st.one_of(_WRITTEN, _ANY).filter(lambda f: f != 1)


def exact(current: int, factor: float) -> int:
    """The rule's number (the shortest decimal text of ``factor``, as YAML gave it) times
    ``current``, as a fraction: rounded away from ``current``."""
    product = Fraction(repr(factor)) * current
    return math.ceil(product) if factor > 1 else math.floor(product)


@pytest.mark.parametrize(
    ("current", "factor", "wanted"),
    [(50, 1.1, 55), (100, 0.57, 57), (25, 2.2, 55), (10, 1.15, 12), (3, 1.5, 5), (3, 0.5, 1)],
)
def test_a_factor_is_multiplied_exactly(current: int, factor: float, wanted: int) -> None:
    assert ScaleParams(factor=factor, min=0, max=1000).wanted(current) == wanted


@given(current=_COUNT.filter(bool), factor=_FACTOR)
@example(current=50, factor=1.1)
@example(current=100, factor=0.57)
def test_wanted_is_the_exact_product_rounded_away_from_the_live_count(
    current: int, factor: float
) -> None:
    assert ScaleParams(factor=factor, min=0, max=1000).wanted(current) == exact(current, factor)


@given(current=_COUNT.filter(bool), factor=_FACTOR, bounds=st.tuples(_COUNT, _COUNT).map(sorted))
@example(current=50, factor=1.1, bounds=[0, 100])
@example(current=100, factor=0.57, bounds=[0, 100])
def test_desired_is_the_exact_product_within_the_bounds_never_the_other_way(
    current: int, factor: float, bounds: list[int]
) -> None:
    params = ScaleParams(factor=factor, min=bounds[0], max=bounds[1])
    product, result = exact(current, factor), params.desired(current)
    if factor > 1:
        assert result == (max(current, min(params.max, max(params.min, product))))
    else:
        assert result == (min(current, max(params.min, min(params.max, product))))


@given(factor=_FACTOR, bounds=st.tuples(_COUNT, _COUNT).map(sorted))
@example(factor=1.5, bounds=[1, 20])  # the shipped scale-workers-on-queue-backlog rule
def test_a_raise_from_zero_reaches_min_and_a_lowering_stays_at_zero(
    factor: float, bounds: list[int]
) -> None:
    """0 x factor is 0 whatever the factor: a raise from 0 asks for the rule's min (0 stays 0
    when min is 0), a lowering from 0 has nowhere to go."""
    params = ScaleParams(factor=factor, min=bounds[0], max=bounds[1])
    assert params.desired(0) == (params.min if factor > 1 else 0)


def test_the_queue_backlog_rule_adds_at_least_one_pod_below_its_max() -> None:
    params = ScaleParams(factor=1.5, min=1, max=20)
    assert [params.desired(n) for n in (0, 1, 2, 13, 14, 19, 20, 25)] == [
        1,
        2,
        3,
        20,
        20,
        20,
        20,
        25,
    ]
