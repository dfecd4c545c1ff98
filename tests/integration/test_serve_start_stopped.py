"""SIGTERM while ``remediator serve`` is still starting ends the start and cleans up; more
SIGTERMs or ^Cs, while it starts or stops, leave no embedded server behind.

Before, Python had no SIGTERM handler until the service could stop gracefully (after the
stores connected and migrated): as a container's PID 1 the kernel dropped the signal and the
pod waited out its grace; elsewhere the signal killed the process, and the embedded
PostgreSQL it was starting lived on. A real ``remediator serve`` on the embedded default,
signalled as soon as it has loaded its rules (before the embedded servers are up).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.polling import current, eventually
from tests.support.served import ROOT, env_for, launch, servers_under


def processes_under(directory: Path) -> list[str]:
    """The command lines of the processes that run in ``directory`` or name it."""
    return list(servers_under(directory).values())


def signalled_until_it_ends(
    proc: subprocess.Popen[str], sig: signal.Signals, every_s: float
) -> int:
    """Send ``sig`` to ``proc`` every ``every_s`` seconds until it exits (an impatient user
    pressing ^C again and again, a supervisor repeating its SIGTERM); its exit code."""
    while proc.poll() is None:
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(every_s)
    return proc.returncode


def started(embedded_dir: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """``remediator serve`` on ``embedded_dir``, its output read by a thread."""
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
    return proc, output


async def test_sigterm_during_the_start_stops_it_and_leaves_no_server(embedded_dir: Path) -> None:
    proc, output = started(embedded_dir)
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


async def test_sigterm_again_and_again_during_the_start_leaves_no_server(
    embedded_dir: Path,
) -> None:
    """The second SIGTERM cut short the wait for the start under way; its stop found nothing
    started yet, and the servers the start went on to run outlived the process."""
    proc, output = started(embedded_dir)
    try:
        await eventually(
            current(lambda: any("rule warning" in line for line in output)),
            what="the rules loaded",
        )
        code = await asyncio.to_thread(signalled_until_it_ends, proc, signal.SIGTERM, 0.3)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "".join(output[-20:])
    assert processes_under(embedded_dir) == [], log
    # Killed by one more SIGTERM once all was stopped, at the very end, is fine too.
    assert code in (0, -signal.SIGTERM), f"exit {code}\n{log}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signals_again_and_again_while_it_stops_leave_no_server(
    embedded_dir: Path, sig: signal.Signals
) -> None:
    """A second SIGTERM while ``serve`` stopped killed it (the loop's handler was gone, the
    default action remained), a later ^C interrupted its wait for the thread stopping the
    servers: the embedded PostgreSQL or Redis outlived it."""
    proc, _, output = await asyncio.to_thread(launch, env_for(embedded_dir))
    try:
        code = await asyncio.to_thread(signalled_until_it_ends, proc, sig, 0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "".join(output[-20:])
    assert processes_under(embedded_dir) == [], log
    # Ended by one more signal once all was stopped, at the very end, is fine too.
    assert code in (0, -sig), f"exit {code}\n{log}"
