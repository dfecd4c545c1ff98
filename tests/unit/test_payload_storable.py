"""What parsing lets through can be stored: U+0000 and lone surrogates become U+FFFD wherever they
are, timestamps past the years Python holds in UTC (year 0 included) read as the first or last
instant, their text kept, and no text has a length limit."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from receiver.alertmanager import (
    EARLIEST,
    LATEST,
    MAX_RENAMED_KEYS,
    REPLACEMENT,
    Notification,
    PayloadError,
    parse_notification,
    parse_notification_carefully,
)
from tests.support.payloads import alert, notification_body

# Characters PostgreSQL text/jsonb or UTF-8 cannot hold, and neighbours that they can.
UNSTORABLE = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]
STORABLE_ODDITIES = ["\x01", "\x1f", "\ufffd", "\ufeff", "\uffff", "\u2028", "\U0001f600", "\\"]


def _body(**raw: Any) -> dict[str, Any]:
    """One DiskFull alert's notification; ``raw`` replaces top-level keys as sent."""
    sent = alert(
        {"alertname": "DiskFull", "instance": "db-1"},
        starts_at="2026-11-30T01:00:00.123456789Z",
        annotations={"summary": "disk full"},
        generator_url="http://prometheus:9090/graph?g0.expr=x",
        raw={"fingerprint": "00000000000000a1"},
    )
    fixed = {"groupKey": '{}:{alertname="DiskFull"}', "commonLabels": {"alertname": "DiskFull"}}
    return notification_body(sent, external_url="http://alertmanager:9093", raw=fixed | raw)


def _encode(body: Any) -> bytes:
    # ensure_ascii: every non-ASCII character as a \u escape, as a lone surrogate must be sent.
    return json.dumps(body).encode()


def _strings(value: Any) -> list[str]:
    """Every string of a JSON-like value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _clean(text: str) -> str:
    return "".join(REPLACEMENT if c in "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


# Where a string can be: (path into the body, how to put `text` there).
PLACES = {
    "alerts.0.labels value": lambda b, t: b["alerts"][0]["labels"].update(instance=t),
    "alerts.0.labels name": lambda b, t: b["alerts"][0]["labels"].update({t: "v"}),
    "alerts.0.annotations value": lambda b, t: b["alerts"][0]["annotations"].update(summary=t),
    "alerts.0.annotations name": lambda b, t: b["alerts"][0]["annotations"].update({t: "v"}),
    "alerts.0.generatorURL": lambda b, t: b["alerts"][0].update(generatorURL=t),
    "receiver": lambda b, t: b.update(receiver=t),
    "groupKey": lambda b, t: b.update(groupKey=t),
    "externalURL": lambda b, t: b.update(externalURL=t),
    "groupLabels": lambda b, t: b["groupLabels"].update(alertname=t),
    "commonLabels": lambda b, t: b["commonLabels"].update({t: t}),
    "commonAnnotations": lambda b, t: b["commonAnnotations"].update(description=t),
    "notification_reason": lambda b, t: b.update(notification_reason=t),
    "routeLabels": lambda b, t: b.update(routeLabels={t: t}),
    "an ignored field": lambda b, t: b.update(future={"x": [t]}),
}


class TestUnstorableCharacters:
    @pytest.mark.parametrize("place", sorted(PLACES))
    @pytest.mark.parametrize("char", UNSTORABLE, ids=[f"U+{ord(c):04X}" for c in UNSTORABLE])
    def test_replaced_everywhere_and_the_rest_kept(self, place: str, char: str) -> None:
        body = _body()
        PLACES[place](body, f"a{char}b")
        note = parse_notification(_encode(body))
        dumped = note.model_dump()
        assert all(_storable(s) for s in _strings(dumped)), place
        assert f"a{REPLACEMENT}b" in _strings(dumped) or place == "an ignored field"
        # Nothing else changed, and the fingerprint is Alertmanager's, as sent.
        expected = json.loads(json.dumps(body).replace(json.dumps(char)[1:-1], "\\ufffd"))
        assert dumped == Notification.model_validate(expected).model_dump()
        assert note.alerts[0].fingerprint == "00000000000000a1"

    def test_case_06_nul_in_one_annotation_keeps_both_alerts(self) -> None:
        body = _body()
        sibling = {**body["alerts"][0], "fingerprint": "00000000000000a2"}
        body["alerts"][0]["annotations"]["summary"] = "value read from a device: abc\x00def"
        body["alerts"].append(sibling)
        note = parse_notification(_encode(body))
        assert [a.fingerprint for a in note.alerts] == ["00000000000000a1", "00000000000000a2"]
        assert (
            note.alerts[0].annotations["summary"]
            == f"value read from a device: abc{REPLACEMENT}def"
        )

    @pytest.mark.parametrize(
        ("escaped", "expected"),
        [
            ("\\ud83d\\ude00", "\U0001f600"),  # a pair is one character, kept
            ("\\uD83D\\uDE00", "\U0001f600"),
            ("\\\\u0000", "\\u0000"),  # an escaped backslash, then text: not a NUL
            ("\\\\\\u0000", f"\\{REPLACEMENT}"),  # an escaped backslash, then a NUL
            ("\\ud800\\ud800\\udc00", f"{REPLACEMENT}\U00010000"),  # lone high, then a pair
            ("\\udc00\\ud800", REPLACEMENT * 2),  # low then high: no pair
            ("\\u0001\\u001f", "\x01\x1f"),  # other control characters are storable
            ("\\u00000", f"{REPLACEMENT}0"),
        ],
    )
    def test_escapes_are_read_one_by_one(self, escaped: str, expected: str) -> None:
        raw = _encode(_body(receiver="@@")).replace(b'"@@"', f'"{escaped}"'.encode())
        assert parse_notification(raw).receiver == expected

    def test_a_raw_surrogate_is_not_utf8_and_refused(self) -> None:
        raw = _encode(_body(receiver="@@")).replace(
            b"@@", "\ud800".encode("utf-8", "surrogatepass")
        )
        with pytest.raises(PayloadError) as caught:
            parse_notification(raw)
        assert caught.value.field == "body"
        assert "UTF-8" in caught.value.message

    def test_names_that_collide_once_replaced_are_both_kept(self) -> None:
        # A 400 here lost the notification's other alerts at every re-send.
        body = _body()
        body["alerts"][0]["labels"].update(
            {"a\x00": "1", "a\ud800": "2", f"a{REPLACEMENT * 2}": "3", "b\x00": "4"}
        )
        body["alerts"].append(alert({"alertname": "Sibling"}))
        note = parse_notification(_encode(body))
        labels = note.alerts[0].labels
        assert labels["a" + REPLACEMENT] == "1"
        assert labels["a" + REPLACEMENT * 3] == "2"  # "a" and two U+FFFD was sent as such
        assert labels["a" + REPLACEMENT * 2] == "3"
        assert labels["b" + REPLACEMENT] == "4"
        assert note.alerts[0].fingerprint == "00000000000000a1"
        assert [a.labels["alertname"] for a in note.alerts] == ["DiskFull", "Sibling"]

    def test_a_name_sent_twice_keeps_its_last_value_as_without_replacement(self) -> None:
        body = _encode(_body(receiver="\x00")).replace(
            b'"instance": "db-1"', b'"instance": "db-1", "instance": "db-2"'
        )
        assert b"db-2" in body
        assert parse_notification(body).alerts[0].labels["instance"] == "db-2"

    @settings(max_examples=300)
    @given(
        text=st.text(
            st.one_of(
                st.characters(),
                st.sampled_from(UNSTORABLE + STORABLE_ODDITIES),
            ),
            max_size=12,
        ),
        place=st.sampled_from(sorted(PLACES)),
    )
    @example(text="\x00", place="receiver")
    def test_any_string_anywhere_parses_to_storable_text(self, text: str, place: str) -> None:
        # An alert's label without a name is refused (tests/unit/test_label_names.py).
        assume(text or place != "alerts.0.labels name")
        body = _body()
        PLACES[place](body, text)
        note = parse_notification(_encode(body))
        assert all(_storable(s) for s in _strings(note.model_dump()))
        if place == "receiver":
            assert note.receiver == _clean(text)


def _resolved(ends_at: str, starts_at: str = "2026-01-01T00:00:00Z") -> bytes:
    body = _body(status="resolved")
    body["alerts"][0].update(status="resolved", startsAt=starts_at, endsAt=ends_at)
    return _encode(body)


class TestTimestampsTheStoreCanHold:
    @pytest.mark.parametrize(
        ("starts_at", "ends_at", "reads"),
        [
            ("2026-01-01T00:00:00Z", "9999-12-31T23:59:59-00:01", ("start", LATEST)),  # case 11
            ("2026-01-01T00:00:00Z", "9999-12-31T23:30:00-23:59", ("start", LATEST)),
            ("0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00Z", (EARLIEST, None)),
            ("0001-01-01T23:00:00+23:59", "0001-01-01T00:00:00Z", (EARLIEST, None)),
            ("9999-12-31T23:59:59-00:01", "9999-12-31T23:59:59-00:01", (LATEST, LATEST)),
        ],
    )
    def test_past_either_end_in_utc_reads_as_that_end_and_keeps_its_text(
        self, starts_at: str, ends_at: str, reads: tuple[Any, Any]
    ) -> None:
        """Alertmanager accepts such a time and sends it with the alert's group every time:
        refusing the notification lost every alert in it. The text stays the identity; what
        Python reads is an instant it can compare and convert (the worker failed on it for
        ever before intake refused it)."""
        note = parse_notification(_resolved(ends_at, starts_at=starts_at))
        alert = note.alerts[0]
        assert (alert.startsAt, alert.endsAt) == (starts_at, ends_at)
        start, end = reads
        if start != "start":
            assert alert.starts_at_datetime == start
        assert alert.ends_at_datetime == end
        for read in (alert.starts_at_datetime, alert.ends_at_datetime):
            if read is not None:
                assert read.astimezone(UTC) <= LATEST

    @pytest.mark.parametrize(
        "ends_at",
        [
            "9999-12-31T23:59:59+00:01",
            "9999-12-31T23:59:59.999999999Z",
            "0001-01-01T00:00:00-00:01",
        ],
    )
    def test_the_edges_that_fit_are_accepted(self, ends_at: str) -> None:
        note = parse_notification(_resolved(ends_at))
        assert note.alerts[0].endsAt == ends_at

    @given(
        year=st.integers(1, 9999),
        rest=st.sampled_from(["01-01T00:00:00", "12-31T23:59:59", "06-15T12:00:00"]),
        sign=st.sampled_from("+-"),
        hours=st.integers(0, 23),
        minutes=st.integers(0, 59),
    )
    def test_every_offset_of_every_year_is_accepted_and_reads_in_utc(
        self, year: int, rest: str, sign: str, hours: int, minutes: int
    ) -> None:
        text = f"{year:04d}-{rest}{sign}{hours:02d}:{minutes:02d}"
        note = parse_notification(_resolved(text, starts_at=text))
        alert = note.alerts[0]
        assert alert.startsAt == text
        try:
            expected = datetime.fromisoformat(text).astimezone(UTC)
        except OverflowError:
            expected = LATEST if year == 9999 else EARLIEST
        # What the worker does with them later (close_run's resolved_at, in UTC) must not
        # overflow: the same instant when it fits, else the end it went past.
        assert alert.starts_at_datetime.astimezone(UTC) == expected
        if alert.ends_at_datetime is not None:
            assert alert.ends_at_datetime.astimezone(UTC) == expected

    @pytest.mark.parametrize(
        ("text", "reads"),
        [
            ("0000-01-01T00:00:00Z", EARLIEST),
            ("0000-02-29T12:00:00.123456789+05:45", EARLIEST),  # year 0 is a leap year, in Go
            ("0000-12-31T23:59:59.999999999Z", EARLIEST),
            ("0000-12-31T23:30:00-01:00", datetime(1, 1, 1, 0, 30, tzinfo=UTC)),
            ("0000-12-31T23:59:59.5-23:59", datetime(1, 1, 1, 23, 58, 59, 500000, tzinfo=UTC)),
        ],
    )
    @pytest.mark.parametrize("careful", [False, True])
    def test_year_0_which_go_writes_is_read_not_refused(
        self, text: str, reads: datetime, careful: bool
    ) -> None:
        """Go's time.Time marshals years 0 to 9999, and Alertmanager 0.35 forwards a startsAt
        or endsAt of year 0 as a source posted it, in its group's notifications: a 400 lost
        every alert of the group at every re-send. Python has no year 0: it reads as the first
        instant, or as the instant it is in UTC when that is in year 1."""
        parse = parse_notification_carefully if careful else parse_notification
        note = parse(_resolved(text, starts_at=text))
        alert = note.alerts[0]
        assert (alert.startsAt, alert.endsAt) == (text, text)
        assert alert.starts_at_datetime == reads
        assert alert.starts_at_datetime.utcoffset() == timedelta(0)
        # An endsAt at the first instant is Go's zero time: no end known.
        assert alert.ends_at_datetime == (None if reads == EARLIEST else reads)

    @pytest.mark.parametrize(
        "text", ["0000-02-30T00:00:00Z", "0000-13-01T00:00:00Z", "0000-01-01T24:00:00Z"]
    )
    def test_an_impossible_date_of_year_0_is_still_refused(self, text: str) -> None:
        with pytest.raises(PayloadError) as caught:
            parse_notification(_resolved(text, starts_at=text))
        assert caught.value.field == "alerts.0.startsAt"
        assert "not a valid RFC 3339 date and time" in caught.value.message


class TestNoLengthLimit:
    """The store indexes a groupKey and an alertname by their hash (migration 0011): neither
    has a length limit here, and a 4xx would lose the notification (Alertmanager does not
    retry one)."""

    @pytest.mark.parametrize("careful", [False, True])
    def test_a_long_alertname_and_group_key_are_accepted(self, careful: bool) -> None:
        body = _body()
        name = "\U0001f600" * 3000
        body["alerts"][0]["labels"]["alertname"] = name
        body["groupKey"] = "{}:{" + "k" * 20000 + "}"
        parse = parse_notification_carefully if careful else parse_notification
        note = parse(_encode(body))
        assert note.alerts[0].labels["alertname"] == name
        assert note.groupKey == body["groupKey"]


def test_thousands_of_colliding_names_are_refused_at_once() -> None:
    # Each rename walked the earlier ones: 4,000 such names in a 71 kB body took 11 s of the
    # event loop, stalling every request; 5,000 held /healthz for 21 s.
    names = b", ".join(b'"a\\u0000": "%d"' % n for n in range(5000))
    raw = _encode(_body()).replace(b'"instance": "db-1"', b'"instance": "db-1", ' + names)
    started = time.thread_time()
    with pytest.raises(PayloadError) as caught:
        parse_notification(raw)
    assert time.thread_time() - started < 1
    assert caught.value.field == "body"
    assert f"more than {MAX_RENAMED_KEYS} names of one object" in caught.value.message


def test_up_to_the_bound_every_colliding_name_is_kept() -> None:
    body = _body()
    raw = _encode(body)
    names = b", ".join(b'"a\\u0000": "%d"' % n for n in range(1 + MAX_RENAMED_KEYS))
    raw = raw.replace(b'"instance": "db-1"', b'"instance": "db-1", ' + names)
    labels = parse_notification(raw).alerts[0].labels
    kept = {k: v for k, v in labels.items() if k.startswith("a" + REPLACEMENT)}
    assert sorted(kept.values(), key=int) == [str(n) for n in range(1 + MAX_RENAMED_KEYS)]
