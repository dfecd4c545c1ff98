"""Servers the tests run as child processes (Prometheus, Alertmanager): started with their output
in a log file, waited for until they answer (through tests/support/polling), and stopped.

``spawn`` starts one, ``Daemon`` is one running (``wait_ready``, ``stop``, ``log_tail``), and
``end`` stops any child process: SIGTERM, then SIGKILL if it does not exit in time.
"""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.polling import eventually

__all__ = ["Daemon", "end", "spawn"]


def end(proc: subprocess.Popen[Any], grace_s: float) -> None:
    """Stop ``proc`` if it still runs: SIGTERM, and SIGKILL after ``grace_s`` seconds; returns
    once it has exited."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn(argv: list[str], workdir: Path, log_name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Run ``argv`` in ``workdir`` with stdout and stderr going to ``workdir/log_name``; the
    process and the log file."""
    log = workdir / log_name
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir)
    return proc, log


@dataclass
class Daemon:
    """One running server: its name (in failure messages), process, base URL and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, grace_s: float = 15) -> None:
        end(self.proc, grace_s)

    def log_tail(self, chars: int = 20000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    async def wait_ready(self, answers: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
        """Poll ``answers()`` (a refused connection is "not yet") until it is true; fail the
        test, with the log's tail, when the process exits first or ``timeout_s`` passes."""

        async def probe() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail(5000)}"
                )
            try:
                return await answers()
            except aiohttp.ClientConnectionError:
                return False

        try:
            await eventually(probe, timeout_s=timeout_s, interval_s=0.2, what=f"{self.name} ready")
        except AssertionError:
            pytest.fail(f"{self.name} not ready within {timeout_s}s:\n{self.log_tail(5000)}")
