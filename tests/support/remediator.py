"""A real ``remediator serve`` for the end-to-end tests, configured as an operator would: external
PostgreSQL and Redis, a kubeconfig, named connections, notification channels, approvals, and
the SHIPPED rules re-timed.

``retimed_rules`` writes the shipped rules/*.yaml with their guard and verification durations
shortened (a test cannot wait out a 10-minute cooldown), and ``idle_for`` of the PostgreSQL
step; the steps, their other params, the conditions' logic, matchers and targets stay as
shipped. ``start`` runs the service as a subprocess and
waits for its banner; ``Api`` reads runs and approvals and decides approvals with an operator's
token, over HTTP like the CLI.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.served import launch

__all__ = ["RULE_TIMES", "Api", "Remediator", "retimed_rules", "start"]

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = ROOT / "rules"

# Shipped duration -> test duration, by where it sits in a rule. Durations not listed stay as
# shipped: `when.repeated.within` and `guards.max_runs.per` (windows the tests stay inside).
RULE_TIMES = {
    "guards.cooldown": "1s",
    "verify.resolved_within": "90s",
    "verify.settle": "3s",
    "when.rolled_out_within": "20s",
    "when.not_rolled_out_within": "20s",
    # postgres.terminate_idle: how long a session must have been idle in its transaction.
    "params.idle_for": "2s",
}


def _retime(rule: dict[str, Any], times: Mapping[str, str]) -> None:
    def put(section: dict[str, Any] | None, key: str, path: str) -> None:
        if section is not None and key in section and path in times:
            section[key] = times[path]

    put(rule.get("guards"), "cooldown", "guards.cooldown")
    put(rule.get("verify"), "resolved_within", "verify.resolved_within")
    put(rule.get("verify"), "settle", "verify.settle")
    for step in rule.get("steps", []):
        put(step.get("when"), "rolled_out_within", "when.rolled_out_within")
        put(step.get("when"), "not_rolled_out_within", "when.not_rolled_out_within")
        put(step.get("params"), "idle_for", "params.idle_for")


def retimed_rules(dest: Path, times: Mapping[str, str] = RULE_TIMES) -> Path:
    """Write every shipped rule file into ``dest`` with ``times`` applied; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(SHIPPED_RULES.glob("*.yaml"))
    assert files, f"no rule files in {SHIPPED_RULES}"
    for path in files:
        data = yaml.safe_load(path.read_text())
        for rule in data["rules"]:
            _retime(rule, times)
        (dest / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


@dataclass
class Remediator:
    """A running ``remediator serve``: its process, URL and output so far."""

    proc: subprocess.Popen[str]
    url: str
    output: list[str]

    def stop(self) -> int:
        """SIGTERM (a graceful shutdown), and the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def log_tail(self, lines: int = 300) -> str:
        return "".join(self.output[-lines:])


def start(env: Mapping[str, str], port: int) -> Remediator:
    """Run ``remediator serve --port PORT`` with ``env``; wait (at most 120 s) for its banner."""
    proc, url, output = launch(dict(env), port=port)
    return Remediator(proc, url, output)


class Api:
    """The operator API of a running service, with one operator's token."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self._session = session
        self._url = url
        self._auth = {"Authorization": f"Bearer {token}"}

    async def _get(self, path: str, **query: str) -> Any:
        async with self._session.get(
            f"{self._url}{path}", params=query, headers=self._auth
        ) as resp:
            assert resp.status == 200, f"GET {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def runs(self, **query: str) -> list[dict[str, Any]]:
        """Runs, newest first (``rule=``, ``target=Kind/ns/name``, ``outcome=`` ...)."""
        return list((await self._get("/api/v1/runs", limit="500", **query))["runs"])

    async def run(self, run_id: str) -> dict[str, Any]:
        """One run with its ``steps`` and its ``audit`` trail."""
        body: dict[str, Any] = await self._get(f"/api/v1/runs/{run_id}")
        return {**body["run"], "audit": body["audit"]}

    async def approvals(self, **query: str) -> list[dict[str, Any]]:
        """Approvals, newest first (``run=``, ``state=``, ``rule=``)."""
        return list((await self._get("/api/v1/approvals", **query))["approvals"])

    async def decide(self, approval_id: int | str, decision: str, reason: str) -> dict[str, Any]:
        """Approve or reject as this operator; the answer's body (asserting 200)."""
        async with self._session.post(
            f"{self._url}/api/v1/approvals/{approval_id}/{decision}",
            json={"reason": reason},
            headers=self._auth,
        ) as resp:
            body: dict[str, Any] = await resp.json()
            assert resp.status == 200, f"{decision} {approval_id}: {resp.status} {body}"
            return body
