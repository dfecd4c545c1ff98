"""``event_json`` (receiver.store.event_rows): the documents intake's insert sends are the
standard library's compact JSON, byte for byte, whichever encoder wrote them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.store.event_rows import event_json


def _as_dict(value: object) -> dict[object, object]:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _standard(value: Any) -> str:
    """What intake sent before orjson wrote its documents."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_as_dict)


# Any code point, lone surrogates among them: what a label of a notification may hold once
# parsed, and what the fallback must still write as it always has.
_texts = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
_labels = st.dictionaries(_texts, _texts, max_size=5)
_event = st.tuples(_texts, _texts, _texts, _texts, _labels, _labels, _texts, st.none() | _texts)
_runs = st.lists(st.tuples(_texts, _texts, st.lists(_event, max_size=3)), max_size=3)


@given(_runs)
def test_a_document_is_the_standard_librarys_compact_json(runs: list[Any]) -> None:
    assert event_json(runs) == _standard(runs)


def test_labels_of_any_mapping_are_written_as_objects_in_their_order() -> None:
    labels = MappingProxyType({"z": "1", "alertname": "A", "é": "ü\u2028"})
    document = event_json([("fp", labels)])
    assert document == '[["fp",{"z":"1","alertname":"A","é":"ü\u2028"}]]'
    assert document == _standard([("fp", labels)])


def test_a_lone_surrogate_is_written_as_the_standard_library_writes_it() -> None:
    # orjson refuses it; the document is then the standard library's, as before, and the
    # store's answer to it (asyncpg cannot encode it as UTF-8) is unchanged.
    document = event_json([{"alertname": "a\ud800b"}])
    assert document == '[{"alertname":"a\ud800b"}]'


def test_a_value_json_cannot_write_raises_type_error() -> None:
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        event_json([{"a"}])
