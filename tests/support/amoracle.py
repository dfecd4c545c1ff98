"""Alertmanager's own matcher code as a test oracle: ``hack/amoracle``, one process per session.

The binary comes from ``$REMEDIATOR_AMORACLE`` if set (``make test`` sets it), else from
``hack/amoracle/build.sh`` (seconds when cached). Requests and replies are JSON lines (see
``hack/amoracle/main.go``); ``Oracle.ask`` sends a batch from a writer thread while reading the
replies, so a large batch cannot fill both pipes and deadlock.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import server_missing
from tests.support.tools import ToolUnavailable, built_tool

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "amoracle" / "build.sh"
BIN_ENV = "REMEDIATOR_AMORACLE"


class OracleError(RuntimeError):
    """The oracle could not be built, started, or answered out of protocol."""


def find_oracle(build_timeout: float = 900.0) -> Path:
    """The oracle binary: ``$REMEDIATOR_AMORACLE``, else the one build.sh builds or caches."""
    try:
        path = built_tool(BIN_ENV, BUILD_SCRIPT, timeout_s=build_timeout)
    except ToolUnavailable as exc:
        raise OracleError(str(exc)) from exc
    if not os.access(path, os.X_OK):
        raise OracleError(f"{path} is not an executable")
    return path


class Oracle:
    """A running oracle process. ``ask`` is not thread-safe; one test at a time uses it."""

    def __init__(self, binary: Path) -> None:
        self._proc = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def ask(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One reply per request, in order."""
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None
        assert stdout is not None
        lines = "".join(json.dumps(r) + "\n" for r in requests)
        failure: list[BaseException] = []

        def write() -> None:
            try:
                stdin.write(lines)
                stdin.flush()
            except OSError as exc:  # the oracle died; the reader reports it
                failure.append(exc)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        replies = []
        for _ in requests:
            line = stdout.readline()
            if not line:
                raise OracleError(f"oracle exited ({self._proc.poll()}) mid-batch: {failure}")
            replies.append(json.loads(line))
        writer.join()
        return replies

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@pytest.fixture(scope="session")
def am_oracle() -> Iterator[Oracle]:
    try:
        binary = find_oracle()
    except OracleError as exc:
        print(f"Alertmanager oracle unavailable: {exc}")
        server_missing("the Alertmanager matcher oracle (hack/amoracle/build.sh)")
    oracle = Oracle(binary)
    try:
        yield oracle
    finally:
        oracle.close()
