"""A real Prometheus (Debian's /usr/bin/prometheus) for the end-to-end tests: the SHIPPED alerting
rules (alertmanager/prometheus-rules.yml) with only their ``for:`` shortened, scraping a test's
metrics endpoint every second, evaluating every second and sending to one Alertmanager.

``retimed_rules`` is that rule file; ``start`` runs Prometheus on a free loopback port with its
configuration, data and log in a work directory; ``Prometheus.alerts()`` reads its alert states
(for a failing test's message).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from receiver.embedded.process import free_port
from tests.support.daemons import Daemon, spawn
from tests.support.servers import server_missing

__all__ = ["SHIPPED_RULES", "Prometheus", "retimed_rules", "start"]

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = ROOT / "alertmanager" / "prometheus-rules.yml"


def retimed_rules(for_: str = "1s") -> dict[str, Any]:
    """The shipped rule groups with every alert's ``for:`` set to ``for_``; expressions, labels
    and annotations exactly as shipped."""
    groups: dict[str, Any] = yaml.safe_load(SHIPPED_RULES.read_text())
    alerts = [r for g in groups["groups"] for r in g["rules"] if "alert" in r]
    assert alerts, f"no alerting rules in {SHIPPED_RULES}"
    for rule in alerts:
        rule["for"] = for_
    return groups


@dataclass
class Prometheus(Daemon):
    """One running Prometheus: its process, URL and log."""

    async def alerts(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """``/api/v1/alerts``: every pending or firing alert, with labels and state."""
        async with session.get(f"{self.url}/api/v1/alerts") as resp:
            body = await resp.json()
        return list(body["data"]["alerts"])

    async def ready(self, session: aiohttp.ClientSession, timeout_s: float = 30) -> None:
        """Wait until it answers ``/-/ready`` and has scraped its target once."""

        async def answers() -> bool:
            async with session.get(f"{self.url}/api/v1/targets") as resp:
                if resp.status != 200:
                    return False
                targets = (await resp.json())["data"]["activeTargets"]
            return bool(targets) and all(t["health"] == "up" for t in targets)

        await self.wait_ready(answers, timeout_s)


def _binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        server_missing("Prometheus (apt-get install prometheus; hack/e2e/install.sh)")
    return path


def start(
    workdir: Path, rules: dict[str, Any], scrape: str, alertmanager: str | list[str]
) -> Prometheus:
    """Start Prometheus scraping ``scrape`` (``host:port``) and alerting ``alertmanager``
    (``host:port``, API v2; a list: every replica of an HA pair, as Prometheus must), scrape
    and evaluation every second, with ``rules``."""
    targets = [alertmanager] if isinstance(alertmanager, str) else alertmanager
    binary = _binary()
    workdir.mkdir(parents=True)
    (workdir / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "alerting": {
            "alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": targets}]}]
        },
        # honor_labels: the series carry namespace and pod, as Kubernetes discovery would set.
        "scrape_configs": [
            {"job_name": "apps", "honor_labels": True, "static_configs": [{"targets": [scrape]}]}
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=info",
    ]
    proc, log = spawn(argv, workdir, "prometheus.log")
    return Prometheus("prometheus", proc, f"http://127.0.0.1:{port}", log)
