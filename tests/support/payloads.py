"""Alertmanager v4 notifications for tests, in the shape Alertmanager 0.25 sends.

``alert`` and ``notification_body`` build the JSON as sent (dicts, ready for ``json.dumps``);
``raw`` sets or replaces keys exactly as sent, for tests of what a bad sender could send.
``notification`` is the body parsed by the receiver's own parser. ``_alert`` and ``_body`` are
one fixed alert and its notification, for the payload parser's own tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from receiver.alertmanager import ZERO_TIME, Notification, parse_notification
from receiver.fingerprints import fingerprint

__all__ = ["alert", "notification", "notification_body"]


def _now() -> str:
    """Now in UTC, as Alertmanager writes a time (RFC 3339, microseconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert(
    labels: Mapping[str, str],
    *,
    status: str = "firing",
    starts_at: str = "2026-11-25T10:00:00.123456789Z",
    ends_at: str | None = None,
    annotations: Mapping[str, str] | None = None,
    generator_url: str = "",
    raw: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One alert; its fingerprint is Alertmanager's for ``labels``. A firing alert ends at
    Alertmanager's zero time, a resolved one now (UTC, when it is built): Alertmanager sends a
    resolution once its endsAt has passed, so a test's resolution comes after what its run
    did (one dated before the run's first step acted is not credited to the rule:
    ``resolved_before_action``); a test of another date passes ``ends_at``."""
    body = {
        "status": status,
        "labels": dict(labels),
        "annotations": dict(annotations if annotations is not None else {"summary": "test"}),
        "startsAt": starts_at,
        "endsAt": ends_at or (ZERO_TIME if status == "firing" else _now()),
        "generatorURL": generator_url,
        "fingerprint": fingerprint(labels),
    }
    body.update(raw or {})
    return body


def notification_body(
    *alerts: dict[str, Any],
    external_url: str = "http://am-0:9093",
    receiver: str = "remediator",
    raw: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A notification of ``alerts``: firing if any is, the labels they share as the common
    ones, grouped by alertname."""
    firing = any(a["status"] == "firing" for a in alerts)
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    body = {
        "version": "4",
        "groupKey": '{}/{team="sre"}:{alertname="' + common.get("alertname", "") + '"}',
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": {"alertname": common.get("alertname", "")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": list(alerts),
    }
    body.update(raw or {})
    return body


def notification(*alerts: dict[str, Any], external_url: str = "http://am-0:9093") -> Notification:
    body = notification_body(*alerts, external_url=external_url)
    return parse_notification(json.dumps(body).encode())


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
