"""What the real Alertmanager's notifications hold, delivered to a real `remediator serve`, for
each of two versions: Debian's (0.25) and a current one (0.35, built from its Go module by
hack/alertmanager/build.sh): a re-fire's startsAt, alerts left out, and a time Python cannot hold.

Alertmanager runs with the shipped alertmanager/alertmanager.yml, only re-timed (group_wait 1s,
group_interval 1s, repeat_interval 3s) and pointed at the receiver on loopback, with the token in a
`credentials_file`. Alerts go in through Alertmanager's v2 API, as Prometheus would post them.
Every test runs against both versions: what they do with retries, re-sends and resolve timeouts
is exactly what the receiver's dedupe and occurrence rules were written against.

1. An alert whose source goes quiet past its endsAt is resolved by Alertmanager, and fired again
   with the SAME startsAt when the source sends it again: a second occurrence, a second run.
2. A receiver with `max_alerts: 1` and a group of two alerts: Alertmanager sends one and says
   it left the other out (`truncatedAlerts`); the receiver counts it and logs a warning.
3. A group one of whose alerts starts in year 0 (Go writes years 0 to 9999; Python has no year
   0): Alertmanager sends it as posted, and both alerts of the group are taken and acted on.

Alertmanager's and the receiver's logs are printed when a test fails
(tests/support/alertmanager_delivery.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from receiver.alertmanager import parse_rfc3339
from receiver.http.alerts import TRUNCATED_WARNING
from tests.support import alertmanagers
from tests.support.alertmanager_delivery import (
    FINISHED,
    LABELS,
    RULE,
    TARGET,
    Processes,
    _metric,
    _post_alert,
    _rfc3339,
    _runs,
    _until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


async def test_a_refire_with_the_same_starts_at_is_a_new_occurrence(processes: Processes) -> None:
    # A window of 0: with one Alertmanager there is no late copy to tell apart, and the test
    # need not wait out the default 5m30s.
    receiver = processes.start_receiver(
        processes.data, settings={"REMEDIATOR_LATE_DELIVERY_WINDOW": "0s"}
    )
    am = processes.start_alertmanager("am", receiver.url)
    starts_at = _rfc3339(datetime.now(UTC) - timedelta(seconds=30))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await alertmanagers.ready(session, am)
        # As Prometheus sends a firing alert: endsAt is a lease a few seconds ahead, and the
        # source then goes quiet, so Alertmanager resolves it when the lease runs out.
        lease = _rfc3339(datetime.now(UTC) + timedelta(seconds=3))
        await _post_alert(session, am, starts_at, lease)

        async def first_closed() -> dict[str, Any] | None:
            runs = await _runs(session, receiver)
            return runs[0] if len(runs) == 1 and runs[0]["resolved_at"] else None

        first = await _until("the first run to be closed by the timed-out alert", first_closed)

        # The source sends it again, with the startsAt it always had.
        await _post_alert(
            session, am, starts_at, _rfc3339(datetime.now(UTC) + timedelta(minutes=5))
        )

        async def second_run() -> list[Any] | None:
            runs = await _runs(session, receiver)
            return runs if len(runs) == 2 and runs[0]["outcome"] in FINISHED else None

        second, again = await _until("a run for the re-fire", second_run)  # newest first
        assert again["id"] == first["id"]
        assert second["starts_at"] == first["starts_at"]
        assert (first["refire"], second["refire"]) == (0, 1)
        assert second["resolved_at"] is None

    assert processes.stop_receiver(receiver) == 0


async def test_alerts_left_out_by_max_alerts_are_counted_and_logged(
    processes: Processes,
) -> None:
    receiver = processes.start_receiver(processes.data)
    am = processes.start_alertmanager("am", receiver.url, max_alerts=1)
    starts_at = _rfc3339(datetime.now(UTC) - timedelta(seconds=30))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await alertmanagers.ready(session, am)
        # Two containers of one Deployment in one post: one group (alertname, namespace,
        # deployment), flushed with both alerts in it.
        alerts = [
            {"labels": {**LABELS, "container": c}, "startsAt": starts_at} for c in ("app", "db")
        ]
        async with session.post(f"{am.url}/api/v2/alerts", json=alerts) as resp:
            assert resp.status == 200, await resp.text()

        async def counted() -> float | None:
            n = await _metric(session, receiver.url, "remediator_alerts_truncated_total")
            return n if n >= 1 else None

        await _until("the receiver to count the alert left out", counted)

    assert processes.stop_receiver(receiver) == 0
    warnings = [
        entry
        for entry in map(_json_or_none, receiver.output)
        if entry is not None and entry.get("event") == TRUNCATED_WARNING
    ]
    assert warnings, "no truncation warning in the receiver's log"
    first = warnings[0]
    assert first["level"] == "warning"
    assert first["receiver"] == "remediator"
    assert 'deployment="web"' in first["group_key"]
    assert (first["truncated_alerts"], first["received_alerts"]) == (1, 1)


async def test_a_group_with_an_alert_of_year_0_is_taken_whole(processes: Processes) -> None:
    receiver = processes.start_receiver(processes.data)
    am = processes.start_alertmanager("am", receiver.url)
    now = _rfc3339(datetime.now(UTC) - timedelta(seconds=30))
    year_0 = "0000-12-31T23:30:00-01:00"  # 0001-01-01T00:30:00Z
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await alertmanagers.ready(session, am)
        # Two containers of one Deployment: one group, one notification with both alerts.
        alerts = [
            {"labels": {**LABELS, "container": "app"}, "startsAt": now},
            {"labels": {**LABELS, "container": "db"}, "startsAt": year_0},
        ]
        async with session.post(f"{am.url}/api/v2/alerts", json=alerts) as resp:
            assert resp.status == 200, await resp.text()

        async def both_runs() -> list[Any] | None:
            runs = await _runs(session, receiver)
            done = [r for r in runs if r["outcome"] in FINISHED]
            return done if len(done) == 2 else None

        runs = await _until("a run for each alert of the group", both_runs)
        # The cooldown refuses the second run on the Deployment: either may come first.
        # Alertmanager writes times as Go does (trailing zeros of the fraction left out).
        starts = sorted(parse_rfc3339(r["starts_at"]) for r in runs)
        assert starts == [parse_rfc3339(year_0), parse_rfc3339(now)]
        assert year_0 in {r["starts_at"] for r in runs}
        assert all(r["rule"] == RULE and r["target"] == TARGET for r in runs)
    assert processes.stop_receiver(receiver) == 0


def _json_or_none(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None
