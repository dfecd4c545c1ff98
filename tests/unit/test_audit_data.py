"""``audit_data`` writes plain data (string keys, no float) in one encoding: the text is the
same as the round trip through JSON that the rest takes (receiver/store/canonical.py)."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from receiver.store.canonical import audit_data, canonical_json

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
