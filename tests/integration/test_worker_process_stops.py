"""Stopping the worker processes of ``serve`` (receiver/processes/) at awkward moments: a stop
that comes while a process is being started, and a ``serve`` that is killed (its sockets'
directory).

The supervisor itself (``WorkerProcesses``) with real worker processes over the test
PostgreSQL and Redis; the log it is given records what it says.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from receiver.assembly import Endpoints
from receiver.config.sources import load_settings
from receiver.processes.handoff import rules_path
from receiver.processes.supervisor import WorkerProcesses
from tests.support.polling import current, eventually
from tests.support.worker_processes import rule_texts

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class _Said:
    """A log that keeps each event it is given, by level."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _say(self, level: str, event: str, **fields: Any) -> None:
        self.events.append((level, event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self._say("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._say("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._say("error", event, **fields)


def _processes(database_url: str, redis_url: str, log: _Said) -> WorkerProcesses:
    settings = load_settings(
        None,
        {
            "REMEDIATOR_DATABASE_URL": database_url,
            "REMEDIATOR_REDIS_URL": redis_url,
            "REMEDIATOR_RULES_DIR": str(ROOT / "rules"),  # the shipped ones: they load
            "REMEDIATOR_WORKER_PROCESSES": "2",
            "REMEDIATOR_WORKER_SHUTDOWN_GRACE": "1s",
        },
    )
    shipped = rule_texts(ROOT / "rules")
    return WorkerProcesses(
        1, settings, Endpoints(database_url, redis_url), rule_files=lambda: shipped, log=log
    )


def _children() -> list[int]:
    pid = os.getpid()
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


async def test_a_stop_while_a_worker_process_is_being_started_stops_it_too(
    database_url: str, redis_url: str
) -> None:
    log = _Said()
    processes = _processes(database_url, redis_url, log)
    before = set(_children())
    loop = asyncio.get_running_loop()
    stopped_at: list[int] = []

    def stop_once_forked() -> None:
        # Each turn of the loop: the first one after the child exists (forked, not yet
        # awaited by the supervisor, which is connecting its pipes) is a SIGTERM to serve.
        new = set(_children()) - before
        if new:
            stopped_at.extend(new)
            processes.stop()
        else:
            loop.call_soon(stop_once_forked)

    processes.start()
    loop.call_soon(stop_once_forked)
    await eventually(current(lambda: stopped_at), what="the worker process forked")
    # Well within the stop's bound: a process that ran on, unsignalled, is killed at it.
    await processes.wait(timeout_s=30)
    assert not [e for e in log.events if e[1] == "stopping: worker processes killed"], log.events
    [(_, said, _)] = [e for e in log.events if e[1].startswith("worker process exited")]
    assert said == "worker process exited", log.events


async def test_a_worker_process_whose_serve_is_killed_leaves_no_socket_directory(
    database_url: str, redis_url: str
) -> None:
    log = _Said()
    processes = _processes(database_url, redis_url, log)
    processes.start()
    handoff = processes.handoff(1)
    await eventually(current(handoff.metrics_socket.exists), what="the worker process serving")
    [child] = processes.pids()
    # A reload passed on: the rules serve wrote for it are in the directory too.
    processes.reload()
    assert rules_path(handoff.metrics_socket).exists()
    # What serve's death does to it: its standard input ends (serve's own cleanup never runs).
    for task_child in processes._children:  # the pipe serve holds open while it lives
        assert task_child.process is not None
        assert task_child.process.stdin is not None
        task_child.process.stdin.close()
    # Checked as its exit is logged, before the supervisor (alive here, unlike serve) starts
    # another one a second later.
    await eventually(
        current(lambda: [e for e in log.events if e[1].startswith("worker process exited")]),
        what="it exited",
    )
    assert child not in processes.pids()
    assert not handoff.metrics_socket.parent.exists()
    processes.stop()
    await processes.wait(timeout_s=30)
