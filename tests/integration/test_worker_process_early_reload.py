"""A reload (SIGHUP) that reaches a worker process before its handler is in place: serve sends
one to every worker process it started when its rules reload, and one still importing or
connecting was ended by SIGHUP's default action (receiver/processes/child.py, the module's
end). It is noted instead, and the rules are read again once the process runs.

The process is taken while it waits for its handoff on standard input (its imports done), as
serve starts one; then it is handed a start on the test PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from receiver.assembly import Endpoints
from receiver.config.sources import load_settings
from receiver.processes.handoff import Handoff, encoded
from tests.support.polling import eventually, eventually_blocking
from tests.support.worker_processes import rule_texts

ROOT = Path(__file__).resolve().parents[2]
PATIENCE_S = 60.0


def _reading_standard_input(pid: int) -> bool:
    """Whether ``pid`` is blocked in read(2) on descriptor 0 (Linux: /proc/PID/syscall)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return fields[:2] == ["0", "0x0"]


async def _waiting_for_its_handoff(
    extra_env: dict[str, str] | None = None,
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver.processes.child",
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    await asyncio.to_thread(
        eventually_blocking,
        lambda: _reading_standard_input(process.pid),
        timeout_s=PATIENCE_S,
        what="the worker process waiting for its handoff",
    )
    return process


async def test_a_reload_before_the_handoff_does_not_end_the_process() -> None:
    process = await _waiting_for_its_handoff()
    process.send_signal(signal.SIGHUP)
    assert process.stdin is not None
    process.stdin.close()  # no handoff: it says so and exits 2, as when started by hand
    assert await asyncio.wait_for(process.wait(), PATIENCE_S) == 2
    assert process.stderr is not None
    assert b"standard input ended before a handoff" in await process.stderr.read()


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_reload_before_the_handoff_is_done_once_the_process_runs(
    database_url: str, redis_url: str
) -> None:
    settings = load_settings(
        None,
        {
            "REMEDIATOR_DATABASE_URL": database_url,
            "REMEDIATOR_REDIS_URL": redis_url,
            "REMEDIATOR_RULES_DIR": str(ROOT / "rules"),
            "REMEDIATOR_WORKER_PROCESSES": "2",
            "REMEDIATOR_WORKER_SHUTDOWN_GRACE": "1s",
            "REMEDIATOR_LOG_LEVEL": "info",
        },
    )
    # A short directory: a Unix socket's path holds at most 107 bytes.
    sockets = Path(tempfile.mkdtemp(prefix="rw-"))
    handoff = Handoff(
        settings,
        Endpoints(database_url, redis_url),
        1,
        sockets / "worker-1.sock",
        rule_texts(ROOT / "rules"),
    )
    process = await _waiting_for_its_handoff()
    assert process.stdin is not None
    assert process.stderr is not None
    process.send_signal(signal.SIGHUP)
    process.stdin.write(encoded(handoff))
    await process.stdin.drain()
    said: list[str] = []

    async def next_line() -> list[str]:
        line = await asyncio.wait_for(process.stderr.readline(), PATIENCE_S)  # type: ignore[union-attr]
        if not line:  # its standard error closed: it ended
            code = await process.wait()
            raise AssertionError(f"the worker process ended ({code}) after: {''.join(said)}")
        said.append(line.decode(errors="replace"))
        return said

    try:
        await eventually(
            next_line,
            lambda lines: (
                any("worker process started" in line for line in lines)
                and any("rules reloaded" in line for line in lines)
            ),
            timeout_s=PATIENCE_S,
            interval_s=0,
            what="the worker process started, and its rules read again",
        )
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), PATIENCE_S)
        shutil.rmtree(sockets, ignore_errors=True)
    assert code == 0
    assert sum("rules reloaded" in line for line in said) == 1
