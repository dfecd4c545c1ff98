"""``worker.processes``: ``remediator serve`` runs the worker in that many processes, starts the
others itself, restarts one that dies, passes a rules reload on, adds their metrics into its
``/metrics``, and stops them with it, also when it is killed (receiver/processes/).

A real ``serve`` on the test PostgreSQL and Redis with two processes of one slot each
(``worker.concurrency`` 1); a local HTTP endpoint holds each run's step, so two steps in flight
at once can only be two processes' work.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemons import end
from tests.support.peer import answering
from tests.support.polling import current, eventually
from tests.support.served import env_for, launch
from tests.support.two_calls import two_calls_alert, two_calls_env, two_calls_rule

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux: /proc/PID/task/PID/children)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def _worker_processes(pid: int) -> list[int]:
    return [child for child in _children(pid) if b"receiver.processes.child" in _cmdline(child)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not running either.
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Held:
    """The sink endpoint: the steps that reached it, and a gate that answers them."""

    calls: list[str]
    gate: asyncio.Event


@dataclass
class Running:
    """The served process, its URL and output, the sink, and the webhook's token."""

    proc: subprocess.Popen[str]
    url: str
    output: list[str]
    held: Held
    token: str

    async def post(self, session: aiohttp.ClientSession, fingerprint: str) -> None:
        """Post one firing TwoCalls alert (its own lane entry: instance = fingerprint)."""
        labels = {"alertname": "TwoCalls", "instance": fingerprint}
        async with session.post(
            f"{self.url}/api/v1/alerts",
            json=two_calls_alert(fingerprint, labels),
            headers={"Authorization": f"Bearer {self.token}"},
        ) as r:
            assert r.status == 200


@asynccontextmanager
async def _served(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> AsyncIterator[Running]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "two.yaml").write_text(two_calls_rule("{max_runs: {count: 100, per: 1h}}"))
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
        env["REMEDIATOR_WORKER_PROCESSES"] = "2"
        proc, url, output = await asyncio.to_thread(launch, env)
        try:
            yield Running(proc, url, output, held, token)
        finally:
            held.gate.set()
            await asyncio.to_thread(end, proc, 90)


async def _metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
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


def _lines(output: list[str], event: str) -> list[dict[str, Any]]:
    found = []
    for line in list(output):
        if event in line and line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                found.append(record)
    return found


async def test_two_processes_work_side_by_side_and_stop_with_serve(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        _served(embedded_dir, tmp_path, database_url, redis_url) as running,
        aiohttp.ClientSession() as session,
    ):
        proc, url, output, held = running.proc, running.url, running.output, running.held
        await eventually(
            current(lambda: _lines(output, "worker process started")), what="worker-1 started"
        )
        [child] = _worker_processes(proc.pid)
        for fingerprint in ("aaaa000000000001", "bbbb000000000002"):
            await running.post(session, fingerprint)
        # One slot a process, and neither step answered: two in flight are two processes.
        await eventually(current(lambda: len(held.calls)), lambda n: n >= 2, what="two steps")
        assert held.calls == ["first", "first"]

        metrics = await _metrics(session, url)
        assert metrics['remediator_worker_processes{state="configured"}'] == 2
        assert metrics['remediator_worker_processes{state="answering"}'] == 2

        held.gate.set()

        async def runs_done() -> float:
            seen = await _metrics(session, url)
            return sum(v for k, v in seen.items() if k.startswith("remediator_runs_total"))

        # Each process counted its own run; /metrics is the sum.
        assert await eventually(runs_done, lambda n: n >= 2, what="two runs counted") == 2
        # A worker process that does not answer a scrape counts with what it said last: the
        # sum does not step back (Prometheus would read a reset, and count it all again).
        os.kill(child, signal.SIGSTOP)
        try:
            stopped = await _metrics(session, url)
        finally:
            os.kill(child, signal.SIGCONT)
        assert stopped['remediator_worker_processes{state="answering"}'] == 1
        assert sum(v for k, v in stopped.items() if k.startswith("remediator_runs_total")) == 2

        # A reload reaches the worker process too.
        proc.send_signal(signal.SIGHUP)
        await eventually(
            current(lambda: [r for r in _lines(output, "rules reloaded") if "process" in r]),
            what="worker-1 reloading the rules",
        )

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 90)
        assert code == 0, "".join(output[-40:])
        assert not _alive(child)
        [exited] = _lines(output, "worker process exited")
        assert (exited["process"], exited["exit_code"]) == ("worker-1", 0)
        assert _lines(output, "worker process stopped")


async def test_a_worker_process_that_dies_is_started_again(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        _served(embedded_dir, tmp_path, database_url, redis_url) as running,
        aiohttp.ClientSession() as session,
    ):
        proc, url, output = running.proc, running.url, running.output
        await eventually(
            current(lambda: _lines(output, "worker process started")), what="worker-1 started"
        )
        [first] = _worker_processes(proc.pid)
        os.kill(first, signal.SIGKILL)
        [restart] = await eventually(
            current(lambda: _lines(output, "worker process exited; starting it again")),
            what="the restart logged",
        )
        assert restart["exit_code"] == -signal.SIGKILL
        second = await eventually(
            current(lambda: [p for p in _worker_processes(proc.pid) if p != first]),
            what="a new worker process",
        )
        await eventually(
            current(lambda: len(_lines(output, "worker process started"))),
            lambda n: n >= 2,
            what="the new one started",
        )

        async def answering_now() -> float:
            seen = await _metrics(session, url)
            return seen['remediator_worker_processes{state="answering"}']

        assert await eventually(answering_now, lambda n: n == 2, what="both answering") == 2
        assert second
        assert not _alive(first)


async def test_a_killed_serve_takes_its_worker_processes_with_it(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with _served(embedded_dir, tmp_path, database_url, redis_url) as running:
        proc, output = running.proc, running.output
        await eventually(
            current(lambda: _lines(output, "worker process started")), what="worker-1 started"
        )
        [child] = _worker_processes(proc.pid)
        proc.kill()
        await asyncio.to_thread(proc.wait, 30)
        # Its standard input ended: it stops as after SIGTERM, handing back what it held.
        await eventually(current(lambda: not _alive(child)), what="the worker process gone")
        assert _lines(output, "worker process stopped")
