"""The per-webhook pieces of intake made cheaper (issue 12) give what they gave before.

Each is pinned against the computation it replaced: the 200's body and headers against
``json_response``, an event's status against calling the enum, the webhook caller against a
new Principal, a path under a prefix against the walk over the prefixes, the HTTP metrics
against what they counted."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from receiver.config import Settings
from receiver.http.alerts import counts_response
from receiver.http.auth import WEBHOOK_NAME, Authenticator, Principal, Role
from receiver.http.middleware import _under
from receiver.http.responses import json_response
from receiver.intake import events_of
from receiver.model import Status
from receiver.telemetry import Metrics
from tests.support.payloads import alert, notification


@given(st.integers(min_value=0, max_value=2**63), st.integers(min_value=0, max_value=2**63))
def test_the_counts_answer_is_byte_for_byte_what_json_response_gave(
    accepted: int, duplicates: int
) -> None:
    before = json_response({"accepted": accepted, "duplicates": duplicates})
    now = counts_response(accepted, duplicates)
    assert now.body == before.body
    assert now.status == before.status == 200
    # But for the API's no-store and nosniff: two more headers on every webhook, and nothing
    # in its counts for them to protect.
    api_only = ("Cache-Control", "X-Content-Type-Options")
    assert dict(now.headers) == {k: v for k, v in before.headers.items() if k not in api_only}
    assert (now.content_type, now.charset) == (before.content_type, before.charset)


def _notification(*statuses: str) -> Any:
    return notification(
        *(alert({"alertname": "A", "n": str(i)}, status=st) for i, st in enumerate(statuses))
    )


def test_an_events_status_is_the_enum_member_of_its_text() -> None:
    events = events_of(_notification("firing", "resolved", "firing"))
    assert [e.status for e in events] == [Status("firing"), Status("resolved"), Status("firing")]
    assert all(type(e.status) is Status for e in events)


class _Odd:
    """An alert whose status no model would let through (AlertLike allows any text)."""

    def __init__(self, alert: Any) -> None:
        self._alert = alert

    def __getattr__(self, name: str) -> Any:
        return "pending" if name == "status" else getattr(self._alert, name)


class _OddNotification:
    def __init__(self, notification: Any) -> None:
        self.groupKey = notification.groupKey
        self.receiver = notification.receiver
        self.alerts = [_Odd(a) for a in notification.alerts]


def test_a_status_that_is_no_member_fails_as_the_enum_does() -> None:
    with pytest.raises(ValueError, match="'pending' is not a valid Status"):
        events_of(_OddNotification(_notification("firing")))


def test_the_webhook_caller_is_the_principal_it_was() -> None:
    auth = Authenticator(Settings(webhook_token=SecretStr("t0ken")))
    caller = auth.identify("Bearer t0ken")
    assert caller == Principal(Role.WEBHOOK, WEBHOOK_NAME)
    assert auth.identify("Bearer t0kem") is None


@given(
    st.text(alphabet="/apvrolsX1", max_size=24), st.lists(st.text(alphabet="/apvrols", max_size=12))
)
def test_under_a_prefix_is_what_the_walk_over_the_prefixes_said(
    path: str, prefixes: list[str]
) -> None:
    walked = any(path == p or path.startswith(p + "/") for p in prefixes)
    below = tuple(p + "/" for p in prefixes)
    assert _under(path, tuple(prefixes), below) is walked


def _sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_http_requests_are_counted_and_timed_as_before() -> None:
    metrics = Metrics(CollectorRegistry())
    for method in ("POST", "POST", "BREW", "brew"):
        metrics.http_request("/api/v1/alerts", method, 200, 0.02)
    metrics.http_request("/api/v1/alerts", "POST", 503, 7.0)
    count = "remediator_http_requests_total"
    post = {"route": "/api/v1/alerts", "method": "POST"}
    assert _sample(metrics, count, {**post, "code": "200"}) == 2
    assert _sample(metrics, count, {**post, "method": "other", "code": "200"}) == 2
    assert _sample(metrics, count, {**post, "code": "503"}) == 1
    duration = "remediator_http_request_duration_seconds"
    route = {"route": "/api/v1/alerts"}
    assert _sample(metrics, duration + "_count", route) == 5
    assert _sample(metrics, duration + "_bucket", {**route, "le": "0.025"}) == 4
    assert _sample(metrics, duration + "_sum", route) == pytest.approx(7.08)
    # Any method token a client invents is one key ("other"): the cache cannot grow with them.
    assert len(metrics._http_children) == 3
