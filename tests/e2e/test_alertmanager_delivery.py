"""The real Alertmanager delivering to a real `remediator serve`, for each of two versions:
Debian's (0.25) and a current one (0.35, built from its Go module by hack/alertmanager/build.sh).

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
3. An alert whose source goes quiet past its endsAt is resolved by Alertmanager, and fired again
   with the SAME startsAt when the source sends it again: a second occurrence, a second run.
4. A receiver with `max_alerts: 1` and a group of two alerts: Alertmanager sends one and says
   it left the other out (`truncatedAlerts`); the receiver counts it and logs a warning.
5. A group one of whose alerts starts in year 0 (Go writes years 0 to 9999; Python has no year
   0): Alertmanager sends it as posted, and both alerts of the group are taken and acted on.

Alertmanager's and the receiver's logs are printed when a test fails.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from receiver.alertmanager import parse_rfc3339
from receiver.embedded.process import free_port
from receiver.http.alerts import TRUNCATED_WARNING
from tests.support import alertmanagers
from tests.support.alertmanagers import Alertmanager
from tests.support.polling import eventually_not_none
from tests.support.served import env_for, launch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

LABELS = {
    "alertname": "HighMemoryUsage",
    "namespace": "demo",
    "deployment": "web",
    "container": "app",
    "severity": "warning",
}
TARGET = {"kind": "Deployment", "namespace": "demo", "name": "web"}
RULE = "restart-on-high-memory"
FINISHED = ("dry_run", "succeeded", "failed", "refused", "verified", "awaiting_approval")

T = TypeVar("T")


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Receiver:
    proc: subprocess.Popen[str]
    url: str
    output: list[str]
    operator: str = ""  # the operator token the embedded default generated (reads the runs)


@dataclass
class Processes:
    """Starts the receiver and Alertmanagers for one test, stops them all and shows their logs."""

    tmp: Path
    token_file: Path
    version: str  # of Alertmanager: one of alertmanagers.VERSIONS
    # The receivers' data (embedded PostgreSQL among it), outside pytest's tmp_path: see
    # tests/support/served.py's embedded_dir for why.
    data: Path
    receivers: list[Receiver] = field(default_factory=list)
    alertmanagers: list[Alertmanager] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def start_receiver(
        self, data_dir: Path, port: int = 0, settings: dict[str, str] | None = None
    ) -> Receiver:
        env = env_for(data_dir) | {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(self.token_file)}
        proc, url, output = launch(env | (settings or {}), port=port)
        receiver = Receiver(proc, url, output)
        self.receivers.append(receiver)
        receiver.operator = (data_dir / "operator-token").read_text().strip()
        return receiver

    def stop_receiver(self, receiver: Receiver) -> int:
        receiver.proc.send_signal(signal.SIGTERM)
        return receiver.proc.wait(60)

    def start_alertmanager(
        self, name: str, receiver_url: str, *, max_alerts: int = 0
    ) -> Alertmanager:
        # Unclustered: two instances do not dedupe between themselves.
        config = alertmanagers.shipped_config(receiver_url, self.token_file, repeat_interval="3s")
        if max_alerts:
            (receiver,) = [r for r in config["receivers"] if r["name"] == "remediator"]
            receiver["webhook_configs"][0]["max_alerts"] = max_alerts
        am = alertmanagers.start(name, self.version, self.tmp / name, config)
        self.alertmanagers.append(am)
        return am

    def close(self) -> None:
        for am in self.alertmanagers:
            am.stop()
        for r in self.receivers:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()
        # Shown by pytest only when the test failed.
        for am in self.alertmanagers:
            print(f"----- {am.name} ({am.version}, {am.url}) log -----")
            print(am.log_tail())
        for i, r in enumerate(self.receivers):
            print(f"----- receiver #{i} ({r.url}) output -----")
            print("".join(r.output[-200:]))


@pytest.fixture(params=alertmanagers.VERSIONS, ids=lambda v: f"am-{v}")
def processes(
    request: pytest.FixtureRequest, tmp_path: Path, embedded_dir: Path
) -> Iterator[Processes]:
    version: str = request.param
    alertmanagers.alertmanager_binary(version)  # skip (or fail in CI) before starting anything
    token_file = tmp_path / "remediator-token"
    token_file.write_text(secrets.token_urlsafe(32) + "\n")
    token_file.chmod(0o600)
    procs = Processes(tmp_path, token_file, version, embedded_dir)
    try:
        yield procs
    finally:
        procs.close()


async def _until(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    """The first value of ``probe`` other than None, within ``timeout`` seconds."""
    return await eventually_not_none(probe, timeout_s=timeout, interval_s=0.2, what=what)


async def _post_alert(
    session: aiohttp.ClientSession, am: Alertmanager, starts_at: str, ends_at: str | None = None
) -> None:
    alert: dict[str, Any] = {
        "labels": LABELS,
        "annotations": {"summary": "demo/web: container app at 95% of its memory limit"},
        "startsAt": starts_at,
        "generatorURL": "http://prometheus.invalid/graph?g0.expr=HighMemoryUsage",
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at
    async with session.post(f"{am.url}/api/v2/alerts", json=[alert]) as resp:
        assert resp.status == 200, await resp.text()


async def _runs(session: aiohttp.ClientSession, receiver: Receiver) -> list[Any]:
    async with session.get(
        f"{receiver.url}/api/v1/runs", headers={"Authorization": f"Bearer {receiver.operator}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        return list(body["runs"])


async def _metric(session: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when there are none)."""
    async with session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


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
