"""`remediator serve` as a user runs it, for the tests: a subprocess on the embedded default
(PostgreSQL and Redis from wheels, dry-run with no cluster) whose banner gives its URL. And
the other commands as an operator runs them: ``cli(env, *args)``, and into a pipe nobody reads
(``cli_into_closed_pipe``, as ``remediator ... | head -1`` once head has exited)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.embedded.process import LEFTOVER_STOP_TIMEOUT_S, stop_leftover
from tests.support.daemons import end
from tests.support.polling import eventually

__all__ = [
    "ROOT",
    "SAMPLE",
    "ServeFactory",
    "Served",
    "a_run_and_a_pause",
    "acted_on_sample",
    "cli",
    "cli_into_closed_pipe",
    "database_env",
    "embedded_dir",
    "env_for",
    "launch",
    "runs_listed",
    "serve",
    "servers_under",
    "stop",
]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "receiver" / "samples" / "high-memory.json"


@dataclass
class Served:
    """A running ``remediator serve``: its process, URL, tokens and output so far."""

    proc: subprocess.Popen[str]
    url: str
    token: str  # the webhook's
    operator: str  # the operator "local"'s
    output: list[str]


def env_for(data_dir: Path) -> dict[str, str]:
    """The environment of a served process: no REMEDIATOR_* of ours, no cluster, that data
    directory, the shipped rules."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env.pop("KUBECONFIG", None)
    env.update(
        REMEDIATOR_DATA_DIR=str(data_dir),
        REMEDIATOR_RULES_DIR=str(ROOT / "rules"),
        REMEDIATOR_LOG_FORMAT="json",
        HOME=str(data_dir / "home"),  # no ~/.kube/config: the service must choose dry-run
    )
    return env


ServeFactory = Callable[..., Served]


def database_env(database_url: str) -> dict[str, str]:
    """The environment of a command that needs only the database: no REMEDIATOR_* of ours but
    ``REMEDIATOR_DATABASE_URL``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env["REMEDIATOR_DATABASE_URL"] = database_url
    return env


async def _spawn(
    env: Mapping[str, str], args: tuple[str, ...], stdout: int
) -> asyncio.subprocess.Process:
    """``python -m receiver.cli ARGS`` with exactly ``env``, from the repository root."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver.cli",
        *args,
        env=dict(env),
        cwd=ROOT,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


async def cli(env: Mapping[str, str], *args: str, timeout_s: float = 120) -> tuple[int, str, str]:
    """``remediator ARGS`` (``python -m receiver.cli``) with exactly ``env``, from the repository
    root: its exit code, stdout and stderr. A command still running after ``timeout_s`` seconds
    fails the test (TimeoutError)."""
    proc = await _spawn(env, args, asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def cli_into_closed_pipe(
    env: Mapping[str, str], *args: str, timeout_s: float = 120
) -> tuple[int, str]:
    """``remediator ARGS`` as ``cli`` runs it, its stdout a pipe whose reading end is closed
    before it starts: its first write fails with EPIPE, every time. Its exit code and stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = await _spawn(env, args, write_end)
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def serve_to_exit(
    env: Mapping[str, str], *, cwd: Path = ROOT, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``remediator serve --port 0`` with exactly ``env`` for a start that must end (a
    refused configuration, a taken data directory): its exit code, stdout and stderr. Still
    running after ``timeout_s`` seconds fails the test (TimeoutExpired)."""
    return subprocess.run(
        [sys.executable, "-m", "receiver.cli", "serve", "--port", "0"],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def launch(
    env: dict[str, str], *, port: int = 0, cwd: Path = ROOT, timeout_s: float = 120.0
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Start ``remediator serve --port {port}`` (0: any free one) and wait for its banner:
    the process, its URL (no trailing slash) and its output so far (a thread keeps reading).
    No banner within ``timeout_s``: the process is killed and the test fails with its output.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m and not url:
                url.append(m.group(1).rstrip("/"))
                found.set()
        found.set()  # the process ended

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout_s) or not url:
        end(proc, 60)  # SIGTERM first: SIGKILL orphaned the embedded servers it had started
        pytest.fail("remediator serve did not start:\n" + "".join(output[-60:]))
    return proc, url[0], output


def servers_under(directory: Path) -> dict[int, str]:
    """The processes (pid: command line) that run in ``directory`` or name it: the embedded
    servers of a data directory there. By working directory too: redis-server rewrites its
    command line to ``redis-server 127.0.0.1:PORT``, naming no directory."""
    found: dict[int, str] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if str(directory) in cmdline or cwd.startswith(str(directory)):
            found[int(pid)] = cmdline.strip()
    return found


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    """A directory for the embedded servers' data, outside pytest's tmp_path: as root,
    PostgreSQL runs as an unprivileged account that must traverse every parent, and each pytest
    session that starts (another one on the machine included) takes that right away from
    /tmp/pytest-of-root, failing an initdb or start in the middle."""
    base = Path(tempfile.mkdtemp(prefix="remediator-data-"))
    try:
        yield base / "data"
    finally:
        left = stop_servers_under(base)
        shutil.rmtree(base, ignore_errors=True)
        if left:
            warnings.warn(
                f"embedded servers outlived the test and were stopped: {left}", stacklevel=1
            )


def stop_servers_under(directory: Path) -> dict[int, str]:
    """Stop the servers still running in ``directory`` (a serve the test killed, or a product
    bug): else the redis-server lived on, holding its port in a deleted directory, while
    PostgreSQL exits by itself once its lock file is gone. Those named by the pid files
    first, as a later serve would (``stop_leftover``), then any process still there, SIGTERM
    then SIGKILL. What was running, for the test's warning."""
    left = servers_under(directory)
    if not left:
        return left
    for pid_file, marker, sig in (
        (directory / "data" / "redis" / "redis.pid", "redis-server", signal.SIGTERM),
        (
            directory / "data" / "postgres" / "data" / "postmaster.pid",
            str(directory),
            signal.SIGINT,
        ),
    ):
        stop_leftover(pid_file, marker, sig, LEFTOVER_STOP_TIMEOUT_S)
    for pid in servers_under(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@pytest.fixture
def serve(embedded_dir: Path) -> Iterator[ServeFactory]:
    """Starts ``remediator serve --port 0`` on ``embedded_dir`` (each call a new process on
    the same directory; ``env``: variables to add) and waits for its banner; stops what is
    still running at the end."""
    started: list[Served] = []

    def start(env: dict[str, str] | None = None) -> Served:
        proc, url, output = launch({**env_for(embedded_dir), **(env or {})})
        token = (embedded_dir / "webhook-token").read_text().strip()
        operator = (embedded_dir / "operator-token").read_text().strip()
        served = Served(proc, url, token, operator, output)
        started.append(served)
        return served

    yield start
    for s in started:
        # SIGTERM first, a minute to stop: SIGKILL would orphan the embedded PostgreSQL and Redis.
        end(s.proc, 60)


def stop(served: Served) -> int:
    """SIGTERM, and the exit code."""
    served.proc.send_signal(signal.SIGTERM)
    return served.proc.wait(60)


async def acted_on_sample(served: Served) -> list[dict[str, Any]]:
    """Check that ``served`` is ready, post ``SAMPLE`` (answered 200) and return the runs of
    ``GET /api/v1/runs`` once the first is finished (AssertionError otherwise). For a serve
    whose poll interval is far away, the run finishing shows that the worker was woken by the
    NOTIFY of intake's commit."""
    auth = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"}
    operator = {"Authorization": f"Bearer {served.operator}"}
    async with aiohttp.ClientSession() as session:

        async def runs() -> list[dict[str, Any]]:
            async with session.get(f"{served.url}/api/v1/runs", headers=operator) as resp:
                assert resp.status == 200
                return list((await resp.json())["runs"])

        async with session.get(f"{served.url}/readyz") as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(
            f"{served.url}/api/v1/alerts", data=SAMPLE.read_bytes(), headers=auth
        ) as resp:
            assert resp.status == 200, await resp.text()
        return await eventually(
            runs,
            lambda got: bool(got) and got[0]["outcome"] not in ("pending", "running"),
            what="a finished run (the worker woken by NOTIFY when its poll is far away)",
        )


async def runs_listed(session: aiohttp.ClientSession, served: Served) -> list[dict[str, object]]:
    """``GET /api/v1/runs``' runs, with the operator's token."""
    async with session.get(
        f"{served.url}/api/v1/runs", headers={"Authorization": f"Bearer {served.operator}"}
    ) as resp:
        assert resp.status == 200
        return list((await resp.json())["runs"])


async def a_run_and_a_pause(served: Served) -> None:
    """/readyz says Redis is ok, an alert's run is settled through the guards, and an
    operator's pause is accepted (the guards' Redis as a user configured it)."""
    auth = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{served.url}/readyz") as resp:
            ready = await resp.json()
            assert resp.status == 200, ready
            assert ready["components"]["redis"]["ok"], ready
        async with session.post(
            f"{served.url}/api/v1/alerts", data=SAMPLE.read_bytes(), headers=auth
        ) as resp:
            assert await resp.json() == {"accepted": 1, "duplicates": 0}
        runs = await eventually(
            lambda: runs_listed(session, served),
            lambda runs: bool(runs) and runs[0]["outcome"] not in ("pending", "running"),
        )
        assert runs[0]["outcome"] == "dry_run"
        async with session.put(
            f"{served.url}/api/v1/pause",
            headers={"Authorization": f"Bearer {served.operator}"},
            json={"reason": "change freeze"},
        ) as resp:
            assert resp.status == 200
