"""``audit_data`` writes plain data (string keys, no float written with an exponent) in one
encoding: the text is the same as the round trip through JSON that the rest takes
(receiver/store/canonical.py)."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.model import RunOutcome
from receiver.store.canonical import _jsonb_number, _plain, _std_json, audit_data, canonical_json
from receiver.store.steps import step_audit

_TEXT = st.text(max_size=8)
_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(_TEXT, inner, max_size=3)
    ),
    max_leaves=16,
)


def _round_trip(data: dict[str, Any]) -> str:
    return canonical_json(json.loads(canonical_json(data)))


@given(st.dictionaries(_TEXT, _PLAIN, max_size=5))
def test_plain_data_is_written_as_the_round_trip_writes_it(data: dict[str, Any]) -> None:
    assert audit_data(data) == _round_trip(data)


def test_keys_that_are_not_strings_sort_as_the_strings_json_makes_them() -> None:
    # Sorted as integers, 9 would come before 10; as JSON's strings, "10" comes first.
    assert audit_data({"n": {9: "a", 10: "b"}}) == '{"n":{"10":"b","9":"a"}}'
    # A dict of another type is not taken as plain, whatever its keys.
    assert audit_data({"n": OrderedDict({9: "a", 10: "b"})}) == '{"n":{"10":"b","9":"a"}}'


def test_floats_are_written_as_jsonb_gives_them_back() -> None:
    assert audit_data({"big": 1e16, "zero": -0.0, "small": 1e-7, "half": 0.5}) == (
        '{"big":10000000000000000,"half":0.5,"small":1e-07,"zero":0.0}'
    )
    assert audit_data({"x": 1.2345678901234567e20}) == '{"x":123456789012345670000}'


def test_nan_and_the_infinities_are_refused_before_the_store() -> None:
    for value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError, match="jsonb has no such number"):
            audit_data({"value": [1, {"x": value}]})


def test_data_that_contains_itself_is_refused_not_walked_forever() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(ValueError, match="Circular reference"):
        audit_data({"value": looped})
    # A part shared by two keys is not a loop: written twice.
    shared = {"a": 1}
    assert audit_data({"x": shared, "y": shared}) == '{"x":{"a":1},"y":{"a":1}}'


def test_a_refused_runs_created_row_is_written_in_one_encoding() -> None:
    # The storm's most written row (runs.py, create_run with a refusal): the one-encoding path
    # is what made it cheaper (issue 12), so it must stay plain; enums are plain values.
    created = {
        "rule": "restart",
        "starts_at": "2026-11-25T10:00:00.123456789Z",
        "event_id": 7,
        "target": {"kind": "Deployment", "namespace": "shop", "name": "web-1"},
        "outcome": RunOutcome.PENDING,
        "dry_run": True,
        "occurrence": 1,
        "refire": 0,
        "alert": {"labels": {"alertname": "X"}, "annotations": {}, "generator_url": ""},
        "steps": [
            step_audit("run", 0, "notify", "not_run", "refused", {"text": "x"}),
            # The shipped high-memory rule's second step: a float, written without exponent.
            step_audit(
                "run",
                1,
                "kubernetes.set_resources",
                "not_run",
                "refused",
                {"container": "app", "memory_limit": {"factor": 1.5, "max": "4Gi"}},
            ),
        ],
    }
    assert _plain(created)
    assert _plain({"x": 1.5, "y": [0.1 + 0.2, 1e15, 0.0001, 0.0]})
    for other in (1e16, 1e-5, -0.0, float("nan"), float("inf")):
        assert not _plain({"x": other}), other
    assert not _plain({1: "x"})


class _Ratio(float):
    """A float subclass: JSON writes it as a float, but it is not taken as plain."""


def test_a_float_subclass_is_not_plain() -> None:
    assert not _plain({"x": _Ratio(1.5)})
    assert audit_data({"x": _Ratio(1.5)}) == '{"x":1.5}'


def _through_jsonb(data: dict[str, Any]) -> str:
    """The round trip every float took before (receiver/store/canonical.py): JSON once, its
    floats read back as jsonb's numeric gives them."""
    return canonical_json(json.loads(_std_json(data), parse_float=_jsonb_number))


_FLOAT = st.floats(allow_nan=False, allow_infinity=False)


@given(st.dictionaries(_TEXT, st.recursive(_FLOAT | _PLAIN, st.lists, max_leaves=6), max_size=4))
def test_data_with_floats_is_written_as_the_round_trip_through_jsonb_writes_it(
    data: dict[str, Any],
) -> None:
    assert audit_data(data) == _through_jsonb(data)


@given(_FLOAT)
def test_every_float_is_the_standard_librarys_text(value: float) -> None:
    assert canonical_json({"x": value, "y": [value]}) == _json_text({"x": value, "y": [value]})


def _json_text(value: Any) -> str:
    """The form every audit row ever written was hashed over (the standard library's), U+0000
    written as the text ``\\x00`` (jsonb refuses it; no row ever held it)."""
    return json.dumps(
        _nul_written(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def _nul_written(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_nul_written(k): _nul_written(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nul_written(v) for v in value]
    return value


@given(st.dictionaries(_TEXT, _PLAIN, max_size=5))
def test_nul_is_written_as_text_jsonb_holds_and_reads_back_the_same(data: dict[str, Any]) -> None:
    text = canonical_json(data)
    assert "\\u0000" not in text.replace("\\\\", "")  # no escape of U+0000 left
    assert canonical_json(json.loads(text)) == text  # the verifier writes it again the same
    assert audit_data(data) == text


def test_a_key_holding_nul_sorts_as_it_is_written() -> None:
    # Sorted as written (\x00 after "0"), or the verifier, sorting what jsonb gives back,
    # wrote another text and the chain broke at the row.
    value = {"0": 1, "\x00": [2, "a\x00b"]}
    assert canonical_json(value) == '{"0":1,"\\\\x00":[2,"a\\\\x00b"]}'
    assert audit_data(value) == canonical_json(value)


@given(_PLAIN)
def test_plain_data_is_the_standard_librarys_text(value: Any) -> None:
    # canonical_json writes plain data with orjson: the text must be the one json writes, or
    # rows written before would no longer verify against rows written after.
    assert canonical_json(value) == _json_text(value)


def test_every_code_point_is_escaped_as_the_standard_library_escapes_it() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    pieces = [every[i : i + 4096] for i in range(0, len(every), 4096)]
    value = {piece: [piece, piece[::-1]] for piece in pieces}
    assert canonical_json(value) == _json_text(value)


def test_what_orjson_refuses_or_spells_otherwise_is_written_by_json() -> None:
    # Integers beyond 64 bits and lone surrogates (orjson refuses them), floats (orjson spells
    # 1e16 as 1e16, json as 1e+16), and enums (their values, either way).
    for value in (
        {"big": 2**64, "small": -(2**63) - 1},
        {"lone": "\ud800x", "\udfff": 1},
        {"f": 1e16, "g": 1e-7, "h": 0.1},
        {"outcome": RunOutcome.REFUSED, "n": [True, None, 2**63 - 1]},
    ):
        assert canonical_json(value) == _json_text(value)
    assert audit_data({"big": 2**70}) == '{"big":1180591620717411303424}'


def test_values_json_cannot_write_are_still_refused() -> None:
    from datetime import UTC, datetime
    from uuid import UUID

    # orjson would write these; the store never has: a caller must convert them first.
    for value in (datetime(2026, 1, 1, tzinfo=UTC), UUID(int=1)):
        with pytest.raises(TypeError):
            canonical_json({"x": value})
