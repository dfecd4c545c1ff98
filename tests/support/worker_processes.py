"""``remediator serve`` with ``worker.processes`` 2, for the tests of its worker processes
(receiver/processes/): a real ``serve`` on the test PostgreSQL and Redis with two processes of
one slot each (``worker.concurrency`` 1), rules ``two-calls`` and ``other-calls`` (two targets,
endpoints ``sink`` and ``other``) in its rules directory, and a local HTTP endpoint behind both
that holds each run's step, so two steps in flight at once, one of each rule, can only be two
processes' work (two of one target cannot be: its lock). And what a test reads of it: its
worker processes, its log lines, its ``/metrics``; and the rule texts a supervisor started by
a test hands its processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from receiver.model import NamespacePolicy
from receiver.rules.loader import RuleHolder
from remediations.registry import default_registry
from tests.support.daemons import end
from tests.support.peer import answering
from tests.support.polling import current, eventually
from tests.support.served import env_for, launch
from tests.support.two_calls import two_calls_alert, two_calls_env, two_calls_rule

__all__ = [
    "OTHER",
    "Held",
    "Running",
    "alive",
    "lines",
    "metrics",
    "rule_texts",
    "served",
    "worker_processes",
]


# How the instance of rule ``other-calls``'s alerts begins: its target (endpoint ``other``) is
# not ``two-calls``'s.
OTHER = "other-"


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux: /proc/PID/task/PID/children)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def worker_processes(pid: int) -> list[int]:
    """The worker processes (``receiver.processes.child``) ``serve`` of ``pid`` runs now."""
    return [child for child in _children(pid) if b"receiver.processes.child" in _cmdline(child)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Held:
    """The sink endpoint: the steps that reached it, and a gate that answers them."""

    calls: list[str]
    gate: asyncio.Event


@dataclass
class Running:
    """The served process, its URL and output, its rules directory, the sink, and the
    webhook's token."""

    proc: subprocess.Popen[str]
    url: str
    output: list[str]
    rules: Path
    held: Held
    token: str

    async def post(
        self, session: aiohttp.ClientSession, fingerprint: str, instance: str = ""
    ) -> None:
        """Post one firing TwoCalls alert, label instance ``instance + fingerprint``: rule
        ``two-calls``'s (endpoint ``sink``), or with ``instance`` ``OTHER`` rule
        ``other-calls``'s (endpoint ``other``)."""
        labels = {"alertname": "TwoCalls", "instance": instance + fingerprint}
        async with session.post(
            f"{self.url}/api/v1/alerts",
            json=two_calls_alert(fingerprint, labels),
            headers={"Authorization": f"Bearer {self.token}"},
        ) as r:
            assert r.status == 200

    async def worker_process(self) -> int:
        """The pid of serve's one worker process, once it has said it started."""
        await eventually(
            current(lambda: lines(self.output, "worker process started")),
            what="worker-1 started",
        )
        [pid] = worker_processes(self.proc.pid)
        return pid


@asynccontextmanager
async def served(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> AsyncIterator[Running]:
    """``serve`` with ``worker.processes`` 2 (above), its rules in ``tmp_path / "rules"``,
    stopped (SIGTERM, then killed) when the block ends."""
    rules = tmp_path / "rules"
    rules.mkdir()
    guards = "{max_runs: {count: 100, per: 1h}}"
    # A second target: a run holds its target's lock, so two runs of one target are never in
    # flight at once, whichever processes claimed them. One alert name: a worker whose slot is
    # busy claims one beyond it of a name with nothing in progress (the express claim).
    alert = 'alertname="TwoCalls"'
    (rules / "two.yaml").write_text(
        two_calls_rule(guards, matchers=(alert, f'instance!~"{OTHER}.*"'))
    )
    (rules / "other.yaml").write_text(
        two_calls_rule(
            guards,
            name="other-calls",
            matchers=(alert, f'instance=~"{OTHER}.*"'),
            endpoint="other",
        )
    )
    held = Held([], asyncio.Event())

    async def endpoint(request: web.Request) -> web.Response:
        held.calls.append((await request.json())["step"])
        await held.gate.wait()
        return web.Response(text="ok")

    token = secrets.token_urlsafe(24)
    async with answering(endpoint) as base:
        env = two_calls_env(
            env_for(embedded_dir),
            database_url=database_url,
            redis_url=redis_url,
            token=token,
            rules=rules,
            sink=f"{base}/sink",
        )
        sinks = {"sink": {"url": f"{base}/sink"}, "other": {"url": f"{base}/sink"}}
        env["REMEDIATOR_HTTP_ENDPOINTS"] = json.dumps(sinks)
        env["REMEDIATOR_WORKER_PROCESSES"] = "2"
        proc, url, output = await asyncio.to_thread(launch, env)
        try:
            yield Running(proc, url, output, rules, held, token)
        finally:
            held.gate.set()
            await asyncio.to_thread(end, proc, 90)


async def metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """Every sample of ``/metrics`` by name and labels, e.g.
    ``remediator_worker_processes{state="answering"}``."""
    async with session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def lines(output: list[str], event: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``output`` whose event is ``event``, in order."""
    found = []
    for line in list(output):
        if event in line and line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                found.append(record)
    return found


def events_by_process(output: list[str]) -> dict[str | None, set[str]]:
    """The events of ``output``'s JSON log lines so far, by the ``process`` that said them
    (None: serve itself)."""
    said: dict[str | None, set[str]] = {}
    for line in list(output):
        if line.startswith("{"):
            record = json.loads(line)
            said.setdefault(record.get("process"), set()).add(record.get("event", ""))
    return said


def rule_texts(directory: Path) -> dict[str, str]:
    """The texts of the rules in ``directory``, as ``serve``'s RuleHolder keeps them and hands
    them to its worker processes (they load). Raises RuleSetError when they do not."""
    return dict(RuleHolder(directory, default_registry(), NamespacePolicy()).files)
