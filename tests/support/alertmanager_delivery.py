"""The real Alertmanager delivering to a real `remediator serve`, for one test, and for each of
two versions: Debian's (0.25) and a current one (0.35, built from its Go module by
hack/alertmanager/build.sh); the tests are tests/e2e/test_alertmanager_*.py.

The ``processes`` fixture (one per version) starts the receivers and Alertmanagers a test asks
for (``Processes``), stops them all after it and prints their logs, shown when the test failed.
Alertmanager runs with the shipped alertmanager/alertmanager.yml, only re-timed (group_wait 1s,
group_interval 1s, repeat_interval 3s) and pointed at the receiver on loopback, with the token in
a `credentials_file`. ``_post_alert`` posts an alert through Alertmanager's v2 API, as Prometheus
would; ``_runs`` and ``_metric`` read the receiver's runs and either server's metrics.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.support import alertmanagers
from tests.support.alertmanagers import Alertmanager
from tests.support.daemons import end
from tests.support.polling import eventually_not_none
from tests.support.served import env_for, launch

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
        self,
        name: str,
        receiver_url: str,
        *,
        max_alerts: int = 0,
        http_config: dict[str, Any] | None = None,
        cluster: tuple[int, list[int]] | None = None,
    ) -> Alertmanager:
        """Unclustered unless ``cluster`` (alertmanagers.start): two instances then do not
        dedupe between themselves. ``http_config`` replaces the shipped webhook's (the bearer
        token in ``token_file``)."""
        config = alertmanagers.shipped_config(receiver_url, self.token_file, repeat_interval="3s")
        (receiver,) = [r for r in config["receivers"] if r["name"] == "remediator"]
        if max_alerts:
            receiver["webhook_configs"][0]["max_alerts"] = max_alerts
        if http_config is not None:
            receiver["webhook_configs"][0]["http_config"] = http_config
        am = alertmanagers.start(name, self.version, self.tmp / name, config, cluster=cluster)
        self.alertmanagers.append(am)
        return am

    def close(self) -> None:
        for am in self.alertmanagers:
            am.stop()
        for r in self.receivers:
            # SIGTERM first: SIGKILL orphaned the receiver's embedded PostgreSQL and Redis.
            end(r.proc, 60)
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
