"""A clustered HA pair of real Alertmanagers delivering to a real `remediator serve`, for each
of two versions: Debian's (0.25) and a current one (0.35). The pair gossips its notification
log on loopback (peer timeout 2 s); the unclustered pair, which does not dedupe, is
test_alertmanager_delivery.py's.

1. Both replicas get the alert (Prometheus posts to every replica) and both flush the group:
   one run, which the resolution, posted to both, closes; no other run.
2. Prometheus evaluating a real rule (`vector(1)`, true 4 s of every 8) sends to both
   replicas: every episode it fires reaches the receiver with the startsAt Prometheus gave it
   (the rule's activeAt, to the millisecond Prometheus sends), makes one run, and the runs of
   the episodes that resolved are closed at the time Prometheus resolved them.

Alertmanager's and the receiver's logs are printed when a test fails
(tests/support/alertmanager_delivery.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from receiver.alertmanager import parse_rfc3339
from receiver.embedded.process import free_port
from tests.support import alertmanagers, prometheus
from tests.support.alertmanager_delivery import (
    FINISHED,
    LABELS,
    RULE,
    TARGET,
    Processes,
    Receiver,
    _metric,
    _post_alert,
    _rfc3339,
    _runs,
    _until,
)
from tests.support.alertmanagers import Alertmanager

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

# HighMemoryUsage with the labels the shipped rule acts on, firing 4 s of every 8.
TOGGLING = {
    "groups": [
        {
            "name": "toggling",
            "rules": [
                {
                    "alert": "HighMemoryUsage",
                    "expr": "vector(1) and on() (vector(time()) % 8 < 4)",
                    "for": "0s",
                    "labels": {k: v for k, v in LABELS.items() if k != "alertname"},
                    "annotations": {"summary": "value {{ $value }}"},
                }
            ],
        }
    ]
}


async def _pair(
    processes: Processes, session: aiohttp.ClientSession, receiver: Receiver
) -> list[Alertmanager]:
    a, b = free_port(), free_port()
    pair = [
        processes.start_alertmanager("am-a", receiver.url, cluster=(a, [b])),
        processes.start_alertmanager("am-b", receiver.url, cluster=(b, [a])),
    ]
    for am in pair:
        await alertmanagers.ready(session, am)
    return pair


async def test_a_clustered_pair_makes_one_run_and_closes_it(processes: Processes) -> None:
    receiver = processes.start_receiver(processes.data)
    starts_at = _rfc3339(datetime.now(UTC) - timedelta(seconds=30))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        pair = await _pair(processes, session, receiver)
        for am in pair:
            await _post_alert(session, am, starts_at)

        async def delivered_and_resent() -> float | None:
            sent = 0.0
            for am in pair:
                sent += await _metric(
                    session, am.url, "alertmanager_notifications_total", integration="webhook"
                )
            return sent if sent >= 2 else None  # the first and a repeat_interval re-send

        await _until("the pair to deliver and re-send", delivered_and_resent)

        async def any_run() -> list[Any] | None:
            # Delivered is stored; the run is the worker's, a moment later on a busy machine.
            return await _runs(session, receiver) or None

        (run,) = await _until("the run", any_run)
        assert (run["rule"], run["target"]) == (RULE, TARGET)
        # As instants: the API trims trailing zeros of the fraction (".61Z" for ".610Z").
        assert parse_rfc3339(run["starts_at"]) == parse_rfc3339(starts_at)

        ends_at = _rfc3339(datetime.now(UTC) - timedelta(seconds=1))
        for am in pair:
            await _post_alert(session, am, starts_at, ends_at)

        async def closed() -> dict[str, Any] | None:
            runs = await _runs(session, receiver)
            assert [r["id"] for r in runs] == [run["id"]]
            return runs[0] if runs[0]["resolved_at"] else None

        done = await _until("the run to be closed", closed)
        assert parse_rfc3339(done["resolved_at"]) == parse_rfc3339(ends_at)

    assert processes.stop_receiver(receiver) == 0


async def test_prometheus_episodes_through_a_clustered_pair(processes: Processes) -> None:
    receiver = processes.start_receiver(processes.data)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        pair = await _pair(processes, session, receiver)
        # Prometheus scrapes the receiver's /metrics only to have a target: the rule needs none.
        prom = prometheus.start(
            processes.tmp / "prometheus",
            TOGGLING,
            receiver.url.removeprefix("http://"),
            [am.host_port for am in pair],
        )
        episodes: set[str] = set()
        try:
            await prom.ready(session)

            async def two_episodes_and_a_resolution() -> list[Any] | None:
                episodes.update(a["activeAt"] for a in await prom.alerts(session))
                runs = await _runs(session, receiver)
                closed = [r for r in runs if r["resolved_at"]]
                return runs if len(runs) >= 2 and closed else None

            runs = await _until(
                "runs of two episodes, one closed", two_episodes_and_a_resolution, 40
            )
        finally:
            prom.stop()

    # Prometheus sends its timestamps to the millisecond; the API shows them to the nanosecond.
    fired = {
        parse_rfc3339(e).replace(microsecond=parse_rfc3339(e).microsecond // 1000 * 1000)
        for e in episodes
    }
    starts = [parse_rfc3339(r["starts_at"]) for r in runs]
    assert len(set(starts)) == len(runs), f"two runs of one episode: {runs}"
    assert set(starts) <= fired, (starts, episodes)
    assert all(r["rule"] == RULE and r["outcome"] in FINISHED for r in runs)
    newest_first = sorted(runs, key=lambda r: r["starts_at"], reverse=True)
    for earlier in newest_first[1:]:
        assert earlier["resolved_at"], f"an earlier episode's run stayed open: {earlier}"
        # Resolved when Prometheus stopped seeing it: 4 s after it fired, give or take an
        # evaluation or two that a loaded machine makes late (before the next episode, 8 s).
        lasted = parse_rfc3339(earlier["resolved_at"]) - parse_rfc3339(earlier["starts_at"])
        assert timedelta(seconds=3) <= lasted <= timedelta(seconds=7), earlier
    assert processes.stop_receiver(receiver) == 0
