"""Webhook payload v4: real shapes from Alertmanager 0.25 and 0.34, and every way a body fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from receiver.alertmanager import (
    ZERO_TIME,
    Alert,
    Notification,
    PayloadError,
    parse_notification,
    parse_notification_carefully,
    parse_rfc3339,
)
from receiver.fingerprints import fingerprint
from tests.support.payloads import alert, notification_body

# As Alertmanager 0.25 sends it: Go escapes <, > and & in strings, the receiver name went
# through regexp.QuoteMeta, the firing alert carries Go's zero time as endsAt, and startsAt
# keeps Prometheus' nanoseconds and the sender's +08:00 offset.
AM_0_25_BODY = (
    b'{"receiver":"web\\\\.hook","status":"firing",'
    b'"alerts":[{"status":"firing",'
    b'"labels":{"alertname":"PgIdleInTxn","namespace":"prod","severity":"critical"},'
    b'"annotations":{"summary":"12 sessions idle in transaction"},'
    b'"startsAt":"2019-01-22T11:47:17.113904445+08:00","endsAt":"0001-01-01T00:00:00Z",'
    b'"generatorURL":"http://prometheus:9090/graph?g0.expr=pg_idle\\u003e10\\u0026g0.tab=1",'
    b'"fingerprint":"3e8c1f0a9b7d2c11"},'
    b'{"status":"resolved","labels":{"alertname":"PgIdleInTxn","namespace":"stage"},'
    b'"annotations":{},"startsAt":"2024-05-27T07:14:54.523Z",'
    b'"endsAt":"2024-05-27T07:20:00.000000001Z","generatorURL":"",'
    b'"fingerprint":"00ff00ff00ff00ff"}],'
    b'"groupLabels":{"alertname":"PgIdleInTxn"},'
    b'"commonLabels":{"alertname":"PgIdleInTxn"},"commonAnnotations":{},'
    b'"externalURL":"http://am-0:9093","version":"4",'
    b'"groupKey":"{}/{team=\\"db\\"}:{alertname=\\"PgIdleInTxn\\"}","truncatedAlerts":0}'
)


def _alert(**raw: Any) -> dict[str, Any]:
    """An alert as sent, ``raw`` replacing its keys (its fingerprint fixed, whatever labels)."""
    return alert(
        {"alertname": "HighErrorRate"},
        starts_at="2024-05-27T07:14:54.523Z",
        annotations={},
        raw={"fingerprint": "0123456789abcdef"} | raw,
    )


def _body(**raw: Any) -> dict[str, Any]:
    """A notification of one ``_alert()``, ``raw`` replacing its top-level keys."""
    fixed = {"groupKey": "{}:{}", "groupLabels": {}, "commonLabels": {}}
    return notification_body(_alert(), external_url="http://am:9093", raw=fixed | raw)


def _parse(body: dict[str, Any]) -> Notification:
    return parse_notification(json.dumps(body).encode())


def _error(raw: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_notification(raw)
    return caught.value


class TestRealShapes:
    def test_alertmanager_0_25_payload(self) -> None:
        note = parse_notification(AM_0_25_BODY)
        assert note.version == "4"
        assert note.receiver == "web\\.hook"
        assert note.groupKey == '{}/{team="db"}:{alertname="PgIdleInTxn"}'
        assert note.truncatedAlerts == 0
        assert note.notification_reason is None
        assert note.routeLabels is None
        firing, resolved = note.alerts
        assert firing.status == "firing"
        assert firing.labels["namespace"] == "prod"
        assert firing.generatorURL == "http://prometheus:9090/graph?g0.expr=pg_idle>10&g0.tab=1"
        # Kept verbatim: idempotency keys need the nanoseconds.
        assert firing.startsAt == "2019-01-22T11:47:17.113904445+08:00"
        assert firing.starts_at_datetime == datetime(
            2019, 1, 22, 11, 47, 17, 113904, tzinfo=timezone(timedelta(hours=8))
        )
        assert firing.endsAt == ZERO_TIME
        assert firing.ends_at_datetime is None
        assert firing.episode == ("3e8c1f0a9b7d2c11", "2019-01-22T11:47:17.113904445+08:00")
        assert resolved.generatorURL == ""
        assert resolved.annotations == {}
        assert resolved.ends_at_datetime == datetime(2024, 5, 27, 7, 20, tzinfo=UTC)

    def test_alertmanager_0_34_payload_with_newer_fields(self) -> None:
        body = _body(
            notification_reason="repeat interval elapsed",
            routeLabels={"team": "db"},
            someFutureField={"nested": [1, 2]},
        )
        note = _parse(body)
        assert note.notification_reason == "repeat interval elapsed"
        assert note.routeLabels == {"team": "db"}
        assert not hasattr(note, "someFutureField")

    def test_truncated_alerts_is_alertmanagers_uint64(self) -> None:
        body = _body()
        body["truncatedAlerts"] = 2**64 - 1
        assert _parse(body).truncatedAlerts == 2**64 - 1
        body["truncatedAlerts"] = 2**64
        with pytest.raises(PayloadError) as caught:
            _parse(body)
        assert caught.value.field == "truncatedAlerts"

    def test_defaults_for_omitted_optional_fields(self) -> None:
        body = _body()
        for key in ("truncatedAlerts", "groupLabels", "commonLabels", "commonAnnotations"):
            del body[key]
        body["alerts"] = [{k: v for k, v in _alert().items() if k in ("status", "startsAt")}]
        body["alerts"][0]["fingerprint"] = "0123456789abcdef"
        note = _parse(body)
        alert = note.alerts[0]
        assert note.truncatedAlerts == 0
        assert note.groupLabels == {}
        assert note.commonLabels == {}
        assert alert.labels == {}
        assert alert.annotations == {}
        assert alert.endsAt == ZERO_TIME
        assert alert.generatorURL == ""

    def test_empty_alert_list_is_valid(self) -> None:
        assert _parse(_body(alerts=[])).alerts == []

    def test_models_are_immutable(self) -> None:
        note = parse_notification(AM_0_25_BODY)
        with pytest.raises(ValueError, match="frozen"):
            note.alerts[0].status = "resolved"  # type: ignore[misc]


class TestTimestamps:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2024-05-27T07:14:54Z", datetime(2024, 5, 27, 7, 14, 54, tzinfo=UTC)),
            ("2024-05-27T07:14:54.5Z", datetime(2024, 5, 27, 7, 14, 54, 500000, tzinfo=UTC)),
            (
                "2024-05-27T07:14:54.999999999Z",
                datetime(2024, 5, 27, 7, 14, 54, 999999, tzinfo=UTC),
            ),
            (
                "2024-05-27t07:14:54-05:30",
                datetime(2024, 5, 27, 7, 14, 54, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
            ),
            (ZERO_TIME, datetime(1, 1, 1, tzinfo=UTC)),
            # More than nine fraction digits: Go's time.Parse takes them (and keeps
            # nanoseconds); so is the notification, not refused with every alert in it.
            (
                "2024-05-27T07:14:54.1234567891Z",
                datetime(2024, 5, 27, 7, 14, 54, 123456, tzinfo=UTC),
            ),
            (
                "2024-05-27T07:14:54.99999999999999999999+01:00",
                datetime(2024, 5, 27, 7, 14, 54, 999999, tzinfo=timezone(timedelta(hours=1))),
            ),
        ],
    )
    def test_accepted(self, text: str, expected: datetime) -> None:
        assert parse_rfc3339(text) == expected
        assert parse_rfc3339(text).utcoffset() == expected.utcoffset()

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "2024-05-27",
            "2024-05-27T07:14:54",  # no offset: would silently be local time
            "2024-05-27 07:14:54Z",
            "2024-05-27T07:14:54.Z",
            "2024-02-30T07:14:54Z",
            "2024-05-27T24:00:00Z",
            "2024-05-27T07:14:54+0800",
            "2024-05-27T07:14:54+25:00",
            "2024-05-27T07:14:54Z\n",
            "\uff11\uff12\uff13\uff14-05-27T07:14:54Z",  # full-width digits
        ],
    )
    def test_rejected(self, text: str) -> None:
        with pytest.raises(ValueError, match="RFC 3339"):
            parse_rfc3339(text)

    @given(st.datetimes(timezones=st.just(UTC)), st.integers(0, 999))
    def test_nanoseconds_truncate_to_microseconds(self, moment: datetime, nanos: int) -> None:
        text = (
            f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
            f".{moment.microsecond:06d}{nanos:03d}Z"
        )
        alert = Alert.model_validate(_alert(startsAt=text))
        assert alert.startsAt == text
        assert alert.starts_at_datetime == moment

    def test_a_long_fraction_is_kept_verbatim(self) -> None:
        # The text is the episode's key, as sent; the datetime is truncated to µs as Go keeps ns.
        text = "2024-05-27T07:14:54.1234567891Z"
        alert = Alert.model_validate(_alert(startsAt=text, endsAt=text))
        assert (alert.startsAt, alert.endsAt) == (text, text)
        assert alert.starts_at_datetime == datetime(2024, 5, 27, 7, 14, 54, 123456, tzinfo=UTC)


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


class TestFingerprint:
    # Vectors from prometheus/common model/signature_test.go (TestMetricToFingerprint and the
    # BenchmarkMetricToFingerprint* cases), given there as decimal uint64.
    @pytest.mark.parametrize(
        ("labels", "expected"),
        [
            ({}, 14695981039346656037),
            ({"name": "garland, briggs", "fear": "love is not enough"}, 5799056148416392346),
            ({"first-label": "first-label-value"}, 5146282821936882169),
            (
                {"first-label": "first-label-value", "second-label": "second-label-value"},
                3195800080984914717,
            ),
            (
                {
                    "first-label": "first-label-value",
                    "second-label": "second-label-value",
                    "third-label": "third-label-value",
                },
                13843036195897128121,
            ),
        ],
    )
    def test_prometheus_common_vectors(self, labels: dict[str, str], expected: int) -> None:
        assert fingerprint(labels) == f"{expected:016x}"

    def test_empty_is_the_fnv_offset_basis(self) -> None:
        assert fingerprint({}) == "cbf29ce484222325"

    def test_separator_keeps_boundaries(self) -> None:
        assert fingerprint({"a": "bc"}) != fingerprint({"ab": "c"})
        assert fingerprint({"a": "", "b": ""}) != fingerprint({"ab": ""})

    @given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6))
    def test_format_and_order_independence(self, labels: dict[str, str]) -> None:
        result = fingerprint(labels)
        assert len(result) == 16
        assert result == result.lower()
        int(result, 16)
        assert fingerprint(dict(reversed(list(labels.items())))) == result

    @given(
        st.dictionaries(st.text(max_size=8), st.text(max_size=8), min_size=1, max_size=6),
        st.data(),
    )
    def test_sensitive_to_every_name_and_value(
        self, labels: dict[str, str], data: st.DataObject
    ) -> None:
        name = data.draw(st.sampled_from(sorted(labels)))
        changed_value = {**labels, name: labels[name] + "x"}
        assert fingerprint(changed_value) != fingerprint(labels)
        renamed = {k: v for k, v in labels.items() if k != name}
        new_name = name + "\x00"
        if new_name not in labels:
            renamed[new_name] = labels[name]
            assert fingerprint(renamed) != fingerprint(labels)


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
