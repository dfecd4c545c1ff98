"""The real Alertmanagers the end-to-end tests run: Debian's (0.25 on bookworm, installed by
hack/e2e/install.sh) and a current one (0.35, built from its Go module by
hack/alertmanager/build.sh), each with the shipped alertmanager/alertmanager.yml, re-timed.

``alertmanager_binary(version)`` finds one (``server_missing`` when it cannot);
``shipped_config`` is the shipped configuration pointed at a test receiver; ``start`` runs one
on a free loopback port with its log in its work directory; ``ready`` waits for ``/-/ready``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from receiver.embedded.process import free_port
from tests.support.daemons import Daemon, spawn
from tests.support.servers import server_missing
from tests.support.tools import ToolUnavailable, built_tool

__all__ = [
    "VERSIONS",
    "Alertmanager",
    "alertmanager_binary",
    "ready",
    "shipped_config",
    "start",
]

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
BUILD_SCRIPT = ROOT / "hack" / "alertmanager" / "build.sh"
# The binary hack/alertmanager/build.sh built (make test sets it); else the tests run the script.
BINARY_ENV = "REMEDIATOR_ALERTMANAGER"
# "debian": the distribution's package (0.25 on Debian 12); "0.35": built from its Go module.
VERSIONS = ("debian", "0.35")

_found: dict[str, str] = {}


def _debian() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):
        path = shutil.which(name)
        if path:
            return path
    server_missing("Alertmanager (apt-get install prometheus-alertmanager; hack/e2e/install.sh)")


def _built() -> str:
    try:
        # Cached after the first build: 0.02 s; cold about 2 minutes (the script says).
        return str(built_tool(BINARY_ENV, BUILD_SCRIPT, timeout_s=1800))
    except ToolUnavailable as exc:
        server_missing(f"Alertmanager 0.35 ({exc})")


def alertmanager_binary(version: str) -> str:
    """The Alertmanager binary for ``version`` (one of ``VERSIONS``), checked to run."""
    if version not in _found:
        path = _debian() if version == "debian" else _built()
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        text = out.stdout + out.stderr
        if out.returncode != 0 or "alertmanager, version" not in text:
            server_missing(f"Alertmanager {version} ({path} --version: {text.strip()[:200]})")
        if version != "debian" and f"version {version}." not in text:
            pytest.fail(f"{path} is not Alertmanager {version}: {text.splitlines()[0]}")
        _found[version] = path
    return _found[version]


def shipped_config(
    receiver_url: str,
    token_file: Path,
    *,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str | None = None,
) -> dict[str, Any]:
    """The shipped alertmanager.yml with the remediator route re-timed and its webhook pointed
    at ``receiver_url`` with the token in ``token_file``; nothing else changed."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED_CONFIG.read_text())
    routes = [r for r in config["route"]["routes"] if r.get("receiver") == "remediator"]
    assert len(routes) == 1, "the shipped configuration has one route to the remediator"
    routes[0].update(group_wait=group_wait, group_interval=group_interval)
    if repeat_interval is not None:
        routes[0]["repeat_interval"] = repeat_interval
    (receiver,) = [r for r in config["receivers"] if r["name"] == "remediator"]
    (hook,) = receiver["webhook_configs"]
    hook["url"] = f"{receiver_url}/api/v1/alerts"
    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return config


@dataclass
class Alertmanager(Daemon):
    """One running Alertmanager: its process, API URL and log file."""

    version: str

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")


def start(
    name: str,
    version: str,
    workdir: Path,
    config: dict[str, Any],
    *,
    cluster: tuple[int, list[int]] | None = None,
) -> Alertmanager:
    """Start Alertmanager ``version`` on a free loopback port (its configuration, data and log
    under ``workdir``, which must not exist yet): unclustered, or with ``cluster`` = (its gossip
    port, its peers' gossip ports) a member of an HA cluster on loopback, whose peer timeout is
    2 s (15 s by default: the second replica waits that long for the first one's entry)."""
    binary = alertmanager_binary(version)
    workdir.mkdir(parents=True)
    config_file = workdir / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary,
        f"--config.file={config_file}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=debug",
    ]
    if cluster is None:
        argv.append("--cluster.listen-address=")  # no clustering: instances never dedupe
    else:
        gossip, peers = cluster
        argv += [f"--cluster.listen-address=127.0.0.1:{gossip}", "--cluster.peer-timeout=2s"]
        argv += [f"--cluster.peer=127.0.0.1:{peer}" for peer in peers]
    proc, log = spawn(argv, workdir, "alertmanager.log")
    return Alertmanager(name, proc, f"http://127.0.0.1:{port}", log, version)


async def ready(session: aiohttp.ClientSession, am: Alertmanager, timeout_s: float = 20) -> None:
    """Wait until ``am`` answers ``/-/ready``; fail the test if it exits or takes too long."""

    async def answers() -> bool:
        async with session.get(f"{am.url}/-/ready") as resp:
            return resp.status == 200

    await am.wait_ready(answers, timeout_s)
