"""The webhook notifications a timeline sends, shaped as Alertmanager sends them. Pure.

Each alert of a test is tracked by name: the notification kinds say what Alertmanager would
send next for it (``research/alertmanager-protocol.md``; README "Re-fires with the same
startsAt"):

- ``firing``: a new episode, ``startsAt`` = now (or the entry's ``starts_at``), ``endsAt`` the
  zero time, as for every firing alert Alertmanager sends.
- ``resolved``: the episode resolves, ``endsAt`` = now (or the entry's ``ends_at``).
- ``repeat``: ``repeat_interval``, or a retry: the latest notification of the alert again.
- ``ha_duplicate``: another Alertmanager replica's copy of the latest notification (``of:
  firing`` for a late copy of the firing one after the alert resolved).
- ``refire``: Alertmanager fires the alert again after resolving it, with the SAME startsAt
  (its source went quiet past endsAt, then sent it again).

A late HA copy of the firing notification and a re-fire are the same bytes: only when they
arrive tells them apart, as in production (``intake.late_delivery_window``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.alertmanager import ZERO_TIME, Notification, parse_notification
from receiver.fingerprints import fingerprint
from receiver.ruletest.spec import AlertSpec, EntrySpec

__all__ = ["AlertTrack", "PlayError", "notification_for", "rfc3339"]

RECEIVER = "remediator"
EXTERNAL_URL = "http://alertmanager.rule-test.invalid:9093"


class PlayError(Exception):
    """A timeline entry that cannot be played as written; the message says why."""


def rfc3339(at: datetime) -> str:
    """``at`` as Alertmanager writes times: RFC 3339 in UTC with a ``Z``."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class AlertTrack:
    """One named alert of a test and the notifications sent for it so far."""

    name: str
    spec: AlertSpec
    fingerprint: str
    firing: dict[str, Any] | None = None
    resolved: dict[str, Any] | None = None
    latest: dict[str, Any] | None = None

    @classmethod
    def of(cls, name: str, spec: AlertSpec) -> AlertTrack:
        return cls(name, spec, fingerprint(spec.labels))

    def next_alert(
        self, kind: str, entry: EntrySpec, now: datetime, start: datetime
    ) -> dict[str, Any]:
        """The alert to send for ``kind`` at ``now``; remembered as sent."""
        if kind == "firing":
            starts = _raw(entry.starts_at, start) or rfc3339(now)
            alert = self._alert("firing", starts, _raw(entry.ends_at, start) or ZERO_TIME)
            self.firing = alert
        elif kind == "resolved":
            if self.firing is None:
                raise PlayError(f"resolved: alert {self.name!r} has not fired yet")
            starts = _raw(entry.starts_at, start) or self.firing["startsAt"]
            alert = self._alert("resolved", starts, _raw(entry.ends_at, start) or rfc3339(now))
            self.resolved = alert
        elif kind == "refire":
            if self.firing is None:
                raise PlayError(f"refire: alert {self.name!r} has not fired yet")
            alert = dict(self.firing)
        else:  # repeat, ha_duplicate
            copied = self.latest
            if entry.of is not None:
                copied = self.firing if entry.of == "firing" else self.resolved
            if copied is None:
                raise PlayError(f"{kind}: nothing was sent for alert {self.name!r} to copy")
            alert = dict(copied)
        self.latest = alert
        return alert

    def _alert(self, status: str, starts_at: str, ends_at: str) -> dict[str, Any]:
        return {
            "status": status,
            "labels": dict(self.spec.labels),
            "annotations": dict(self.spec.annotations),
            "startsAt": starts_at,
            "endsAt": ends_at,
            "generatorURL": self.spec.generator_url,
            "fingerprint": self.fingerprint,
        }


def _raw(value: str | float | None, start: datetime) -> str | None:
    """An entry's raw starts_at/ends_at: kept as written, or an offset from the start."""
    if value is None or isinstance(value, str):
        return value
    return rfc3339(start + timedelta(seconds=value))


def notification_for(alerts: Sequence[Mapping[str, Any]]) -> Notification:
    """One webhook notification (payload version 4) holding ``alerts``, read by the same
    parser the webhook uses."""
    common = dict(alerts[0]["labels"])
    for alert in alerts[1:]:
        common = {k: v for k, v in common.items() if alert["labels"].get(k) == v}
    name = common.get("alertname", "")
    body = {
        "version": "4",
        "groupKey": '{}:{alertname="' + name + '"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": RECEIVER,
        "groupLabels": {"alertname": name} if name else {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": EXTERNAL_URL,
        "alerts": [dict(a) for a in alerts],
    }
    return parse_notification(json.dumps(body).encode())
