"""An audit outbox entry as read from Redis (``receiver.guards.switch``): whatever bytes it
holds, it becomes a record the audit log can hold: one that is not UTF-8 text is recorded as it
is, escaped, never raising before the code that records unreadable entries."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from receiver.guards.switch import UNREADABLE_KIND, _records

_FIELD = st.sampled_from([b"entry", b"kind", b"at", b"data", b"until", b"was_paused"])


def _holdable(data: object) -> bool:
    """What jsonb takes: no NaN or infinity, UTF-8 text, no U+0000."""
    json.dumps(data, ensure_ascii=False, allow_nan=False).encode()
    return all("\x00" not in text for text in _texts(data))


def _texts(value: object) -> list[str]:
    """Every string in ``value``, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


@given(st.dictionaries(_FIELD | st.binary(max_size=8), st.binary(max_size=40), min_size=1))
def test_any_entry_becomes_a_record_the_audit_log_can_hold(raw: dict[bytes, bytes]) -> None:
    (record,) = _records([(b"1700000000000-0", raw)])
    assert _holdable(record.data)
    assert record.entry == record.data["entry"]


@given(st.binary(min_size=1, max_size=20).filter(lambda b: not _utf8(b) or b"\x00" in b))
def test_data_that_is_not_utf8_text_is_recorded_escaped(data: bytes) -> None:
    raw = {b"entry": b"e1", b"kind": b"guards.resume", b"at": b"1", b"was_paused": b"1"}
    (record,) = _records([(b"5-0", {**raw, b"data": data})])
    assert record.kind == UNREADABLE_KIND
    assert record.data["escaped"] == ["data"]
    escaped = data.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
    assert record.data["fields"]["data"] == escaped


def _utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True
