"""Quantity arithmetic and the resource params of the Kubernetes actions (set_resources and its
quantity changes): parsing, the API server's spelling, scaling under a cap, and what a rule
may not write (fractions of a byte, binary cpu). Pure, no cluster."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from remediations.kubernetes import quantity
from remediations.kubernetes.container import QuantityChange, SetResourcesParams


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512Mi", Decimal(512 * 2**20)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("100Ki", Decimal(102400)),
        ("250m", Decimal("0.25")),
        ("2", Decimal(2)),
        ("0.5", Decimal("0.5")),
        ("4G", Decimal(4 * 10**9)),
        ("1e3", Decimal(1000)),
        ("1E-3", Decimal("0.001")),
        ("10u", Decimal("0.00001")),
        ("+1k", Decimal(1000)),
        (".5", Decimal("0.5")),
    ],
)
def test_parse(text: str, value: Decimal) -> None:
    assert quantity.value_of(text) == value


@pytest.mark.parametrize("text", ["", "Mi", "abc", "-1Mi", "1.5.5", "5MB", "1 Gi", "0x10", "1mi"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0.5Gi", "512Mi"),
        ("2048Mi", "2Gi"),
        ("1536Mi", "1536Mi"),
        ("1Ki", "1Ki"),
        ("0.5Ki", "512"),  # binary below 1024 is spelled in decimal, as the API server does
        ("1000m", "1"),
        ("1.5", "1500m"),
        ("1000", "1k"),
        ("100", "100"),
        ("0", "0"),
        ("4G", "4G"),
        ("4000M", "4G"),
        ("0.1m", "100u"),
    ],
)
def test_canonical_matches_api_server_spelling(text: str, canonical: str) -> None:
    assert quantity.canonical(text) == canonical


@pytest.mark.parametrize(
    ("current", "factor", "cap", "resource", "expected"),
    [
        ("256Mi", 1.5, "4Gi", "memory", "384Mi"),
        ("100Mi", 1.3, "4Gi", "memory", "130Mi"),
        ("100Mi", 1.01, "4Gi", "memory", "101Mi"),  # 101.0 exactly: no extra MiB
        ("1000M", 1.1, "4Gi", "memory", "1050Mi"),  # 1049.04 MiB, rounded up to a whole MiB
        ("3Gi", 2, "4Gi", "memory", "4Gi"),  # capped
        ("1Gi", 1.5, "1.2G", "memory", "1200M"),  # cap keeps its own spelling
        ("1Gi", 0.5, "4Gi", "memory", "512Mi"),
        ("500m", 1.5, "2", "cpu", "750m"),
        ("1", 1.5, "4", "cpu", "1500m"),
        ("333m", 1.5, "1", "cpu", "500m"),  # 499.5m rounded up
        ("2", 2, "4", "cpu", "4"),
    ],
)
def test_scale(current: str, factor: float, cap: str, resource: str, expected: str) -> None:
    assert quantity.scale(current, factor, cap, resource=resource) == quantity.Scaled(expected)


def test_equal_compares_values_not_spelling() -> None:
    assert quantity.equal("1Gi", "1024Mi")
    assert quantity.equal("1", "1000m")
    assert not quantity.equal("1G", "1Gi")
    assert not quantity.equal(None, "1")
    assert quantity.equal(None, None)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "u", "n"]),
)
def test_canonical_keeps_the_value(number: int, suffix: str) -> None:
    text = f"{number}{suffix}"
    canonical = quantity.canonical(text)
    assert quantity.value_of(canonical) == quantity.value_of(text)
    assert quantity.canonical(canonical) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"factor": 1.5},  # the cap is mandatory
        {"value": "1Gi", "factor": 1.5, "max": "2Gi"},
        {"value": "1Gi", "max": "2Gi"},
        {"value": "lots"},
        {"factor": 1.5, "max": "-1Gi"},
        {"factor": 0, "max": "1Gi"},
    ],
)
def test_quantity_change_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        QuantityChange.model_validate(raw)


def test_quantity_change_is_canonicalised() -> None:
    assert QuantityChange(value="0.5Gi").value == "512Mi"
    assert QuantityChange(factor=1.5, max="4096Mi").max == "4Gi"


def test_set_resources_params() -> None:
    params = SetResourcesParams.model_validate(
        {"container": "app", "memory_limit": {"factor": 1.5, "max": "4Gi"}}
    )
    assert list(params.changes()) == [("limits", "memory")]
    with pytest.raises(ValidationError, match="at least one"):
        SetResourcesParams.model_validate({"container": "app"})
    with pytest.raises(ValidationError, match="container name"):
        SetResourcesParams.model_validate({"container": "App_1", "cpu_limit": {"value": "1"}})
    with pytest.raises(ValidationError):
        SetResourcesParams.model_validate({"container": "app", "disk_limit": {"value": "1"}})


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("memory_limit", {"value": "512m"}),  # 0.512 bytes: m is milli, not Mi
        ("memory_request", {"value": "1.5"}),
        ("memory_limit", {"factor": 1.5, "max": "4096m"}),  # a cap of 4.096 bytes
        ("memory_request", {"factor": 0.5, "max": "100u"}),
    ],
)
def test_memory_in_fractions_of_a_byte_is_refused(field: str, change: dict[str, Any]) -> None:
    """Memory is counted in bytes: Kubernetes' own docs warn that 400m is 0.4 bytes, not
    400Mi, and the API server only warns ("fractional byte value"); refused when rules load."""
    key = "max" if "max" in change else "value"
    with pytest.raises(ValidationError, match=rf"{key}: {change[key]!r} is a fraction of a byte"):
        SetResourcesParams.model_validate({"container": "app", field: change})


@pytest.mark.parametrize(
    ("field", "change", "cores"),
    [
        ("cpu_limit", {"value": "1Ki"}, "1024"),
        ("cpu_request", {"value": "0.5Ki"}, "512"),
        ("cpu_limit", {"factor": 1.5, "max": "2Mi"}, "2097152"),
    ],
)
def test_cpu_with_a_binary_suffix_is_refused(
    field: str, change: dict[str, Any], cores: str
) -> None:
    """A binary suffix on cpu is a power of 1024 cores: the API server takes "1Ki" as 1024
    cores without a word (apimachinery's Quantity has no unit; a container's cpu is only
    checked to be non-negative), so a rule set a limit no node gives; refused when rules load."""
    key = "max" if "max" in change else "value"
    with pytest.raises(
        ValidationError, match=rf"{key}: {change[key]!r} is {cores} cores .*write e.g. 2, 1.5"
    ):
        SetResourcesParams.model_validate({"container": "app", field: change})


def test_whole_bytes_and_cpu_fractions_are_accepted() -> None:
    params = SetResourcesParams.model_validate(
        {
            "container": "app",
            "memory_limit": {"value": "0.5Gi"},
            "memory_request": {"factor": 1.5, "max": "1e3"},
            "cpu_limit": {"value": "512m"},
            "cpu_request": {"factor": 1.5, "max": "250m"},
        }
    )
    assert len(params.changes()) == 4
