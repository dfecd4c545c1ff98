"""SIGTERM while ``remediator serve`` is still starting ends the start and cleans up.

Before, Python had no SIGTERM handler until the service could stop gracefully (after the
stores connected and migrated): as a container's PID 1 the kernel dropped the signal and the
pod waited out its grace; elsewhere the signal killed the process, and the embedded
PostgreSQL it was starting lived on. A real ``remediator serve`` on the embedded default,
signalled as soon as it has loaded its rules (before the embedded servers are up).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.polling import current, eventually
from tests.support.served import ROOT, env_for


def processes_under(directory: Path) -> list[str]:
    """The command lines of the processes that name ``directory`` (the embedded servers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline:
            found.append(cmdline)
    return found


async def test_sigterm_during_the_start_stops_it_and_leaves_no_server(embedded_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "serve", "--port", "0"],
        env=env_for(embedded_dir),
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        output.extend(proc.stdout)

    threading.Thread(target=pump, daemon=True).start()
    try:
        # The rules' warnings come before the embedded servers start (initdb takes seconds).
        await eventually(
            current(lambda: any("rule warning" in line for line in output)),
            what="the rules loaded",
        )
        assert not any("listening on" in line for line in output)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "".join(output[-20:])
    assert code == 0, f"exit {code}\n{log}"
    assert "Traceback" not in "".join(output), log
    assert not any("listening on" in line for line in output), log
    assert processes_under(embedded_dir) == []
