"""Webhook payload v4 as Alertmanager sends it: real shapes from Alertmanager 0.25 and 0.34,
their timestamps, and the fingerprints of their labels."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.alertmanager import (
    MAX_FIELD_PART,
    MAX_PROBLEMS,
    ZERO_TIME,
    Alert,
    Notification,
    PayloadError,
    parse_notification,
    parse_rfc3339,
)
from receiver.fingerprints import fingerprint
from tests.support.payloads import _alert, _body

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


def _parse(body: dict[str, Any]) -> Notification:
    return parse_notification(json.dumps(body).encode())


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

    def test_every_problem_is_named_in_the_schemas_order(self) -> None:
        body = _body(receiver=7)
        body["alerts"] = [_alert(), _alert(startsAt="noon"), _alert(status="on fire")]
        with pytest.raises(PayloadError) as caught:
            _parse(body)
        error = caught.value
        assert (error.field, error.message) == error.problems[0]
        assert [field for field, _ in error.problems] == [
            "receiver",
            "alerts.1.startsAt",
            "alerts.2.status",
        ]
        assert "noon" in error.problems[1][1]
        assert error.more is False

    def test_the_problems_listed_are_bounded(self) -> None:
        body = _body()
        body["alerts"] = [_alert(startsAt=f"day {i}") for i in range(MAX_PROBLEMS + 7)]
        with pytest.raises(PayloadError) as caught:
            _parse(body)
        assert len(caught.value.problems) == MAX_PROBLEMS
        assert caught.value.more is True
        assert caught.value.problems[-1][0] == f"alerts.{MAX_PROBLEMS - 1}.startsAt"

    def test_a_label_map_names_its_first_bad_value_only(self) -> None:
        body = _body(commonLabels={"a": 1, "b": 2})
        body["alerts"] = [_alert(labels={"x": 1, "y": 2, "z": 3})]
        with pytest.raises(PayloadError) as caught:
            _parse(body)
        assert [field for field, _ in caught.value.problems] == [
            "commonLabels.a",
            "alerts.0.labels.x",
        ]

    def test_a_body_of_many_bad_alerts_is_refused_in_bounded_memory(self) -> None:
        """Every problem of 100,000 empty alerts (300,000: each lacks three fields) was built
        before twenty were kept: 190 MB, and seconds of the event loop, for a 0.4 MB body (a
        16 MiB one, gigabytes). The search now stops one bad alert past MAX_PROBLEMS."""
        body = json.dumps({**_body(), "alerts": [{}] * 100_000}).encode()
        tracemalloc.start()
        try:
            with pytest.raises(PayloadError) as caught:
                parse_notification(body)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(caught.value.problems) == MAX_PROBLEMS
        assert caught.value.more is True
        assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB"

    def test_good_alerts_between_bad_ones_are_not_named(self) -> None:
        body = _body()
        body["alerts"] = [_alert()] * 1000 + [_alert(status="x")] + [_alert()] * 1000
        body["alerts"].append(_alert(startsAt="never"))
        with pytest.raises(PayloadError) as caught:
            _parse(body)
        assert [field for field, _ in caught.value.problems] == [
            "alerts.1000.status",
            "alerts.2001.startsAt",
        ]
        assert caught.value.more is False

    def test_a_problem_names_a_long_label_name_by_its_start(self) -> None:
        """A label name is a part of a problem's field, as long as the sender wrote it:
        twenty of 800 kB, each with a number for a value (a 16 MiB body), were answered
        whole (the first twice: ``field`` and ``problems``), more bytes than the body, and the
        first was logged whole. Each part is cut as a value is (``quoted``)."""
        long_names = ["\u00e9" * 100_000 + str(i) for i in range(3)]
        body = _body()
        body["alerts"] = [_alert(labels={name: 1}) for name in long_names]
        with pytest.raises(PayloadError) as caught:
            _parse(body)
        error = caught.value
        assert len(error.problems) == 3
        for i, (field, _message) in enumerate(error.problems):
            assert field.startswith(f"alerts.{i}.labels.\u00e9\u00e9"), field[:40]
            assert field.endswith("..."), field[-40:]
            assert len(field) <= len(f"alerts.{i}.labels.") + MAX_FIELD_PART
        assert error.field == error.problems[0][0]

    def test_a_body_that_is_not_json_has_one_problem(self) -> None:
        with pytest.raises(PayloadError) as caught:
            parse_notification(b"{not json")
        assert caught.value.problems == ((caught.value.field, caught.value.message),)
        assert caught.value.field == "body"

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
