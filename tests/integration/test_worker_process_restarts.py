"""The supervisor of worker processes (receiver/processes/supervisor.py) with real child
processes that cannot start (their PostgreSQL refuses connections): each exit is logged with
its code and the process started again after a pause; a stop during that pause ends it at once.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from receiver.assembly import Endpoints
from receiver.config.sources import load_settings
from receiver.processes import supervisor
from receiver.processes.supervisor import WorkerProcesses
from tests.support.polling import current, eventually


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


async def test_a_stop_during_the_pause_before_a_restart_ends_it_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pause far longer than the wait below: only a stop that ends it lets wait return.
    monkeypatch.setattr(supervisor, "FIRST_PAUSE_S", 3600.0)
    dsn = f"postgresql://remediator:x@127.0.0.1:{_closed_port()}/remediator"
    settings = load_settings(
        None,
        {
            "REMEDIATOR_DATABASE_URL": dsn,
            "REMEDIATOR_REDIS_URL": "redis://127.0.0.1:1/0",
            "REMEDIATOR_WEBHOOK_TOKEN": "t" * 32,
            "REMEDIATOR_WORKER_PROCESSES": "2",
        },
    )
    log = Recorded()
    processes = WorkerProcesses(1, settings, Endpoints(dsn, None), log=log)
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
