"""An alert's label names: any non-empty text is one (Alertmanager's UTF-8 names included), an
empty one is refused with the field named, on the fast path and the careful one alike."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.alertmanager import PayloadError, parse_notification, parse_notification_carefully
from tests.support.payloads import alert, notification_body


def _body(*labels: dict[str, str]) -> bytes:
    alerts = [
        alert(labels_, starts_at="2026-01-01T00:00:00Z", raw={"fingerprint": "0123456789abcdef"})
        for labels_ in labels
    ]
    return json.dumps(notification_body(*alerts)).encode()


@pytest.mark.parametrize("parse", [parse_notification, parse_notification_carefully])
def test_an_empty_label_name_is_refused_naming_the_alert_and_the_value(parse: object) -> None:
    body = _body({"alertname": "A"}, {"alertname": "B", "": "web-1"})
    with pytest.raises(PayloadError) as caught:
        parse(body)  # type: ignore[operator]
    assert caught.value.field == "alerts.1.labels"
    assert (
        caught.value.message
        == "a label has an empty name (value 'web-1'); every label needs a name"
    )


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s),
        st.text(max_size=8).filter(lambda s: "\x00" not in s),
        max_size=4,
    )
)
def test_every_non_empty_name_is_kept_as_sent(labels: dict[str, str]) -> None:
    note = parse_notification(_body(labels))
    assert dict(note.alerts[0].labels) == labels
