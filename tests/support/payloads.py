"""Alertmanager v4 notifications for tests, in the shape Alertmanager 0.25 sends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from receiver.alertmanager import ZERO_TIME, Notification, fingerprint, parse_notification


def alert(
    labels: Mapping[str, str],
    *,
    status: str = "firing",
    starts_at: str = "2026-11-25T10:00:00.123456789Z",
    ends_at: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": dict(labels),
        "annotations": dict(annotations or {"summary": "test"}),
        "startsAt": starts_at,
        "endsAt": ends_at or (ZERO_TIME if status == "firing" else "2026-11-25T10:05:00Z"),
        "generatorURL": "",
        "fingerprint": fingerprint(labels),
    }


def notification_body(
    *alerts: dict[str, Any], external_url: str = "http://am-0:9093", receiver: str = "remediator"
) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return {
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


def notification(*alerts: dict[str, Any], external_url: str = "http://am-0:9093") -> Notification:
    body = notification_body(*alerts, external_url=external_url)
    return parse_notification(json.dumps(body).encode())
