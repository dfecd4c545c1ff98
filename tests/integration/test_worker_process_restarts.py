"""Worker processes started again (receiver/processes/supervisor.py). The supervisor with real
child processes that cannot start (their PostgreSQL refuses connections): each exit is logged
with its code and the process started again after a pause; a stop during that pause ends it at
once. And ``serve`` (``worker.processes`` 2) whose rule files have errors since it loaded them:
a worker process that dies starts again on the rules ``serve`` runs on, and works with them.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.assembly import Endpoints
from receiver.config import Settings
from receiver.config.sources import load_settings
from receiver.processes import handoff, supervisor
from receiver.processes.supervisor import WorkerProcesses
from tests.support.polling import current, eventually
from tests.support.worker_processes import (
    OTHER,
    lines,
    metrics,
    rule_texts,
    served,
)

ROOT = Path(__file__).resolve().parents[2]


class Recorded:
    """A structlog-shaped logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append(("error", event, fields))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, e, fields in self.lines if e == event]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unreachable(dsn: str) -> Settings:
    """Settings whose PostgreSQL (``dsn``) and Redis refuse connections."""
    return load_settings(
        None,
        {
            "REMEDIATOR_DATABASE_URL": dsn,
            "REMEDIATOR_REDIS_URL": "redis://127.0.0.1:1/0",
            "REMEDIATOR_WEBHOOK_TOKEN": "t" * 32,
            "REMEDIATOR_WORKER_PROCESSES": "2",
        },
    )


async def test_a_stop_during_the_pause_before_a_restart_ends_it_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pause far longer than the wait below: only a stop that ends it lets wait return.
    monkeypatch.setattr(supervisor, "FIRST_PAUSE_S", 3600.0)
    dsn = f"postgresql://remediator:x@127.0.0.1:{_closed_port()}/remediator"
    settings = _unreachable(dsn)
    log = Recorded()
    # Rules that load: what fails the start is the store.
    shipped = rule_texts(ROOT / "rules")
    processes = WorkerProcesses(
        1, settings, Endpoints(dsn, None), rule_files=lambda: shipped, log=log
    )
    processes.start()
    [failed] = await eventually(
        current(lambda: log.events("worker process exited; starting it again")),
        what="the failed start logged",
    )
    # 3: a start that failed (the store unreachable), said by the process itself.
    assert (failed["process"], failed["exit_code"], failed["retry_in_s"]) == ("worker-1", 3, 3600)
    processes.stop()
    await processes.wait(timeout_s=60)
    assert log.events("stopping: worker processes killed") == []
    assert processes.pids() == []


async def test_rules_too_large_to_hand_are_said_and_the_process_started_again_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "FIRST_PAUSE_S", 3600.0)
    # A bound the shipped rules exceed, in place of a rule set of 256 MiB.
    monkeypatch.setattr(handoff, "_MOST_BYTES", 1024)
    dsn = f"postgresql://remediator:x@127.0.0.1:{_closed_port()}/remediator"
    shipped = rule_texts(ROOT / "rules")
    log = Recorded()
    processes = WorkerProcesses(
        1, _unreachable(dsn), Endpoints(dsn, None), rule_files=lambda: shipped, log=log
    )
    processes.start()
    [refused] = await eventually(
        current(lambda: log.events("worker process could not be started")),
        what="the refusal logged",
    )
    assert refused["process"] == "worker-1"
    assert refused["error"].endswith(
        "make them smaller, or run the worker in serve's process alone (worker.processes 1)"
    )
    [again] = await eventually(
        current(lambda: log.events("worker process exited; starting it again")),
        what="the restart planned",
    )
    # Killed unhanded, at once: no process of its left running.
    assert again["exit_code"] is None
    assert processes.pids() == []
    processes.stop()
    await processes.wait(timeout_s=60)


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_worker_process_started_again_runs_on_serve_s_rules_when_the_files_have_errors(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        served(embedded_dir, tmp_path, database_url, redis_url) as running,
        aiohttp.ClientSession() as session,
    ):
        url, output, held = running.url, running.output, running.held
        first = await running.worker_process()
        # An operator pushes a typo: serve's watcher reloads, fails, keeps its rules, and
        # passes them on (worker-1 reloads serve's). Waited for, so that no reload is under way
        # when the next process starts.
        # Written whole (a dot-file is not read), so that one reload sees it.
        (running.rules / ".typo.yaml").write_text("rules: [ {name: broken\n")
        (running.rules / ".typo.yaml").rename(running.rules / "typo.yaml")
        failed = "rule reload failed; keeping the last good rules"
        await eventually(
            current(lambda: [r.get("process") for r in lines(output, failed)]),
            lambda who: who == [None],
            what="serve keeping its rules",
        )
        await eventually(
            current(lambda: [r.get("process") for r in lines(output, "rules reloaded")]),
            lambda who: who == ["worker-1"],
            what="worker-1 reloading serve's",
        )

        os.kill(first, signal.SIGKILL)
        await eventually(
            current(lambda: len(lines(output, "worker process started"))),
            lambda n: n >= 2,
            what="the new one started (on main: exit 3, errors in the rule files, forever)",
        )

        async def answering_now() -> float:
            seen = await metrics(session, url)
            return seen['remediator_worker_processes{state="answering"}']

        assert await eventually(answering_now, lambda n: n == 2, what="both answering") == 2
        assert lines(output, "worker process not started: errors in the rule files") == []
        # It works with them: one slot a process, neither step answered, and two targets, so
        # two steps in flight are both processes' work, each matched by a rule serve handed.
        await running.post(session, "cccc000000000003")
        await running.post(session, "dddd000000000004", OTHER)
        await eventually(current(lambda: len(held.calls)), lambda n: n >= 2, what="two steps")
        assert held.calls == ["first", "first"]
        admitted = [r.get("process") for r in lines(output, "admitted")]
        assert sorted(admitted, key=str) == [None, "worker-1"], admitted
