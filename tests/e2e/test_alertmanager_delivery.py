"""The real Alertmanager delivering to a real `remediator serve`, for each of two versions:
Debian's (0.25) and a current one (0.35, built from its Go module by hack/alertmanager/build.sh):
duplicates and deliveries that fail. What the notifications hold:
test_alertmanager_notifications.py.

Alertmanager runs with the shipped alertmanager/alertmanager.yml, only re-timed (group_wait 1s,
group_interval 1s, repeat_interval 3s) and pointed at the receiver on loopback, with the token in a
`credentials_file`. Alerts go in through Alertmanager's v2 API, as Prometheus would post them.
Every test runs against both versions: what they do with retries, re-sends and resolve timeouts
is exactly what the receiver's dedupe and occurrence rules were written against.

1. Two unclustered Alertmanagers (what an HA pair does when gossip has not settled or is
   partitioned) both deliver, and each re-sends after repeat_interval: the receiver counts the
   duplicates and creates exactly one run; resolving the alert closes that run.
2. Deliveries while the receiver is down fail (connection refused) and are retried; once it is
   back on the same port and data directory the alert arrives and one run is created.

Alertmanager's and the receiver's logs are printed when a test fails
(tests/support/alertmanager_delivery.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from receiver.embedded.process import free_port
from tests.support import alertmanagers
from tests.support.alertmanager_delivery import (
    FINISHED,
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


def _check_run(run: dict[str, Any]) -> None:
    assert run["rule"] == RULE
    assert run["outcome"] == "dry_run"
    assert run["target"] == TARGET


async def test_duplicates_from_two_alertmanagers_and_repeats_make_one_run(
    processes: Processes,
) -> None:
    receiver = processes.start_receiver(processes.data)
    ams = [processes.start_alertmanager(name, receiver.url) for name in ("am-a", "am-b")]
    starts_at = _rfc3339(datetime.now(UTC) - timedelta(seconds=30))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for am in ams:
            await alertmanagers.ready(session, am)
        for am in ams:  # Prometheus posts every alert to every Alertmanager replica
            await _post_alert(session, am, starts_at)

        async def one_finished_run() -> dict[str, Any] | None:
            runs = await _runs(session, receiver)
            return runs[0] if len(runs) == 1 and runs[0]["outcome"] in FINISHED else None

        run = await _until("the run", one_finished_run)
        _check_run(run)

        # Both Alertmanagers delivered, and each re-sent the unchanged group after repeat_interval.
        async def resent() -> bool | None:
            for am in ams:
                sent = await _metric(
                    session, am.url, "alertmanager_notifications_total", integration="webhook"
                )
                if sent < 2:
                    return None
            return True

        await _until("both Alertmanagers to deliver and re-send", resent)

        async def duplicates_counted() -> float | None:
            n = await _metric(session, receiver.url, "remediator_alert_duplicates_total")
            # the peer's copy and at least one re-send from each Alertmanager
            return n if n >= 3 else None

        await _until("the receiver to count the duplicates", duplicates_counted)
        for am in ams:
            failed = await _metric(
                session, am.url, "alertmanager_notifications_failed_total", integration="webhook"
            )
            assert failed == 0, f"{am.name} had failed deliveries (auth?)"
        runs = await _runs(session, receiver)
        assert [r["id"] for r in runs] == [run["id"]]

        # Prometheus resolves an alert by posting it with endsAt in the past.
        ends_at = _rfc3339(datetime.now(UTC) - timedelta(seconds=1))
        for am in ams:
            await _post_alert(session, am, starts_at, ends_at)

        async def resolved() -> dict[str, Any] | None:
            runs = await _runs(session, receiver)
            assert len(runs) == 1
            return runs[0] if runs[0]["resolved_at"] else None

        closed = await _until("the run to be resolved", resolved)
        assert closed["id"] == run["id"]
        assert (
            await _metric(
                session, receiver.url, "remediator_alerts_received_total", status="resolved"
            )
            >= 1
        )

    assert processes.stop_receiver(receiver) == 0


async def test_deliveries_while_the_receiver_is_down_arrive_when_it_is_back(
    processes: Processes,
) -> None:
    data_dir = processes.data
    port = free_port()
    first = processes.start_receiver(data_dir, port)
    assert first.url == f"http://127.0.0.1:{port}"
    assert processes.stop_receiver(first) == 0

    am = processes.start_alertmanager("am", first.url)
    starts_at = _rfc3339(datetime.now(UTC) - timedelta(seconds=30))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await alertmanagers.ready(session, am)
        await _post_alert(session, am, starts_at)

        async def refused() -> float | None:
            n = await _metric(
                session,
                am.url,
                "alertmanager_notification_requests_failed_total",
                integration="webhook",
            )
            return n if n >= 2 else None

        await _until("Alertmanager's deliveries to fail and be retried", refused)

        again = processes.start_receiver(data_dir, port)
        assert again.url == first.url

        async def one_finished_run() -> dict[str, Any] | None:
            runs = await _runs(session, again)
            return runs[0] if len(runs) == 1 and runs[0]["outcome"] in FINISHED else None

        run = await _until("the alert to arrive and its run to finish", one_finished_run, 45)
        _check_run(run)
        assert (
            await _metric(session, again.url, "remediator_alerts_received_total", status="firing")
            >= 1
        )
        assert (
            await _metric(
                session, am.url, "alertmanager_notifications_total", integration="webhook"
            )
            >= 1
        )

    assert processes.stop_receiver(again) == 0
