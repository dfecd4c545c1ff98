"""Webhook payload v4: every way a body fails, and the fast path (pydantic-core straight from
bytes) never accepting what the careful path refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from receiver.alertmanager import (
    Notification,
    PayloadError,
    parse_notification,
    parse_notification_carefully,
)
from tests.support.payloads import _alert, _body


def _error(raw: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_notification(raw)
    return caught.value


class TestErrors:
    @pytest.mark.parametrize(
        ("raw", "field", "fragment"),
        [
            (b"", "body", "invalid JSON"),
            (b"{not json", "body", "invalid JSON"),
            (b'{"version": "4",', "body", "invalid JSON"),
            (b"\xff\xfe{}", "body", "UTF-8"),
            (b"[]", "body", "JSON object"),
            (b'"4"', "body", "JSON object"),
            (b'{"version": "4", "truncatedAlerts": NaN}', "body", "NaN"),
            (b"[" * 100_000, "body", "invalid JSON"),
        ],
    )
    def test_undecodable_body(self, raw: bytes, field: str, fragment: str) -> None:
        error = _error(raw)
        assert error.field == field
        assert fragment in error.message
        assert str(error) == f"{field}: {error.message}"

    @pytest.mark.parametrize(
        ("raw", "says"),
        [
            # Python's own message told the sender to call sys.set_int_max_str_digits().
            (b'{"version": "4", "truncatedAlerts": ' + b"1" * 5000 + b"}", "more than 4300 digits"),
            (b'{"version": "4", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too deeply"),
        ],
    )
    def test_json_python_cannot_read_is_named_in_the_senders_words(
        self, raw: bytes, says: str
    ) -> None:
        error = _error(raw)
        assert error.field == "body"
        assert error.message.startswith("invalid JSON: ")
        assert says in error.message
        assert "sys." not in error.message
        assert "recursion" not in error.message

    @pytest.mark.parametrize(
        ("field", "body"),
        [
            ("alerts.0.startsAt", _body(alerts=[_alert(startsAt="x" * 1_000_000)])),
            ("alerts.0.endsAt", _body(alerts=[_alert(endsAt="2024-13-01T00:00:00Z" * 50_000)])),
            ("version", _body(version="v" * 1_000_000)),
        ],
    )
    def test_a_long_bad_value_is_quoted_by_its_start(self, field: str, body: Any) -> None:
        # The message is the 400's and the "rejected notification" log line's: each repeated
        # the value whole, megabytes of it.
        error = _error(json.dumps(body).encode())
        assert error.field == field
        assert len(error.message) < 200, error.message[:300]
        assert "..." in error.message

    @pytest.mark.parametrize("version", ["3", 4, None, ""])
    def test_wrong_version_names_the_value(self, version: object) -> None:
        error = _error(json.dumps(_body(version=version)).encode())
        assert error.field == "version"
        assert repr(version) in error.message

    def test_version_is_checked_before_the_rest(self) -> None:
        error = _error(json.dumps({"version": "3", "alerts": "nope"}).encode())
        assert error.field == "version"

    def test_missing_version(self) -> None:
        body = _body()
        del body["version"]
        assert _error(json.dumps(body).encode()).field == "version"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({k: v for k, v in _body().items() if k != "alerts"}, "alerts"),
            (_body(alerts=None), "alerts"),
            (_body(status="pending"), "status"),
            (_body(truncatedAlerts=-1), "truncatedAlerts"),
            (_body(truncatedAlerts="1"), "truncatedAlerts"),
            (_body(groupLabels={"a": 1}), "groupLabels.a"),
            (_body(alerts=[_alert(status="pending")]), "alerts.0.status"),
            (_body(alerts=[_alert(), _alert(startsAt="yesterday")]), "alerts.1.startsAt"),
            (_body(alerts=[_alert(startsAt="2024-05-27T07:14:54")]), "alerts.0.startsAt"),
            (_body(alerts=[_alert(endsAt="2024-13-01T00:00:00Z")]), "alerts.0.endsAt"),
            (_body(alerts=[_alert(fingerprint="0123456789ABCDEF")]), "alerts.0.fingerprint"),
            (_body(alerts=[_alert(fingerprint="abc")]), "alerts.0.fingerprint"),
            (_body(alerts=[_alert(labels={"x": None})]), "alerts.0.labels.x"),
            (_body(alerts=[_alert(labels=None)]), "alerts.0.labels"),
        ],
    )
    def test_schema_error_names_the_field(self, body: dict[str, Any], field: str) -> None:
        error = _error(json.dumps(body).encode())
        assert error.field == field
        assert error.message

    def test_bad_timestamp_message_shows_the_value(self) -> None:
        error = _error(json.dumps(_body(alerts=[_alert(startsAt="yesterday")])).encode())
        assert error.message == "not an RFC 3339 timestamp: 'yesterday'"


# The fast path (pydantic-core straight from bytes) must never accept what the careful path
# refuses, and must build the same model when both accept.
_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_BASE_ALERT = {
    "status": "firing",
    "labels": {"alertname": "X"},
    "annotations": {},
    "startsAt": "2026-11-25T10:00:00.123456789Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "",
    "fingerprint": "0123456789abcdef",
}
_BASE = {
    "version": "4",
    "groupKey": "{}:{}",
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "r",
    "groupLabels": {},
    "commonLabels": {},
    "commonAnnotations": {},
    "externalURL": "",
    "alerts": [_BASE_ALERT],
}


@given(
    top=st.dictionaries(st.sampled_from(sorted(_BASE)), _JSON, max_size=2),
    alert=st.dictionaries(st.sampled_from(sorted(_BASE_ALERT)), _JSON, max_size=2),
    drop=st.sets(st.sampled_from(sorted(_BASE))),
    raw_nan=st.booleans(),
)
def test_fast_path_never_accepts_what_the_careful_path_refuses(
    top: dict[str, object], alert: dict[str, object], drop: set[str], raw_nan: bool
) -> None:
    doc: dict[str, object] = {**_BASE, **top, "alerts": [{**_BASE_ALERT, **alert}]}
    for key in drop:
        doc.pop(key, None)
    body = json.dumps(doc).encode()
    if raw_nan:
        body = body.replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": NaN')
    try:
        fast = Notification.model_validate_json(body)
    except ValidationError:
        return  # refused by the fast path: the careful path decides alone
    if b"\\u0000" in body:
        # parse_notification skips the fast path here: it would keep U+0000 as it is.
        assert "\x00" not in _every_string(parse_notification(body).model_dump())
        return
    assert parse_notification_carefully(body) == fast
    assert parse_notification(body) == fast


def _every_string(value: object) -> str:
    """Every string of a JSON-like value, keys included, joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "".join(_every_string(k) + _every_string(v) for k, v in value.items())
    if isinstance(value, list):
        return "".join(_every_string(v) for v in value)
    return ""
