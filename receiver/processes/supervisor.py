"""``serve``'s side of its worker processes: start them, start one again when it exits, pass on
a rules reload, stop them with ``serve``, and read their metrics.

A worker process that exits while ``serve`` runs (a crash, the OOM killer, a start that failed
because a store was down) is started again after a pause that doubles from 1 s to 30 s, and
back to 1 s once one has run a minute: its claims are not lost meanwhile, their leases run out
and any worker takes them up (README, "Worker processes"). Standard output and error are
``serve``'s own, so their logs are in the same place, each line naming its ``process``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

import receiver
from receiver.assembly import Endpoints
from receiver.config import Settings
from receiver.metrics_merge import Reading
from receiver.processes.handoff import (
    Handoff,
    HandoffError,
    encoded,
    process_name,
    rules_path,
    write_rules,
)

__all__ = ["WorkerProcesses"]

FIRST_PAUSE_S = 1.0
LAST_PAUSE_S = 30.0
# A process that ran this long was not failing to start: the next exit pauses FIRST_PAUSE_S.
STEADY_S = 60.0
# How long a scrape waits for a worker process's metrics.
METRICS_TIMEOUT_S = 2.0


@dataclass(slots=True, eq=False)
class _Child:
    index: int
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = field(default=None)

    @property
    def name(self) -> str:
        return process_name(self.index)


class WorkerProcesses:
    """``count`` worker processes (``worker.processes`` - 1) of a ``serve`` whose settings and
    stores are ``settings`` and ``endpoints``. ``start`` starts them, ``stop`` asks them to stop
    (SIGTERM: each stops as ``serve`` stops its worker), ``wait`` waits for them at most
    ``timeout_s`` and kills what is left. ``rule_files`` gives the texts of the rules ``serve``
    runs on, by file path (``RuleHolder.files``), read at each start of a process: it starts on
    them, not on the files as they are then. ``clock`` is the event loop's (seconds)."""

    def __init__(
        self,
        count: int,
        settings: Settings,
        endpoints: Endpoints,
        *,
        rule_files: Callable[[], Mapping[str, str]],
        log: Any,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # The credentials of the HTTP side (the webhook's, the operators') stay in serve: a
        # worker process answers no request, and each credential is held where it is used.
        self._settings = settings.model_copy(
            update={
                "webhook_token": None,
                "webhook_password": None,
                "operator_token": None,
                "operator_tokens": {},
            }
        )
        self._endpoints = endpoints
        self._rule_files = rule_files
        self._log = log
        self._clock = clock
        self._stopping = False
        # Set by stop: a pause before a restart ends at once.
        self._stopped = asyncio.Event()
        # The sockets' directory: mode 0700, this user's alone.
        self._dir = Path(tempfile.mkdtemp(prefix="remediator-workers-")) if count > 0 else None
        self._children = [_Child(i) for i in range(1, count + 1)]

    def pids(self) -> list[int]:
        """The process ids of the worker processes running now."""
        return [c.process.pid for c in self._children if _running(c)]  # type: ignore[union-attr]

    def start(self) -> None:
        """Start every worker process, each supervised by a task of its own."""
        for child in self._children:
            child.task = asyncio.create_task(self._supervise(child), name=child.name)

    def stop(self) -> None:
        """Start none again, and send each one running SIGTERM, once: called again, nothing."""
        if not self._stopping:
            self._stopping = True
            self._stopped.set()
            self._signal(signal.SIGTERM)

    def reload(self) -> None:
        """Have every running worker process reload the rules ``serve`` runs on now (after its
        own reload, good or failed): their texts written where each reads them
        (``rules_path``), then SIGHUP. Written once for all, so that a process slow to act on
        the signal reloads ``serve``'s latest, not the directory as it is by then."""
        if self._dir is None:
            return
        try:
            write_rules(rules_path(self._socket(1)), self._rule_files())
        except (HandoffError, OSError) as exc:
            # Not signalled: each keeps the rules it has, rather than reload older texts.
            self._log.error("rules reload not passed on to the worker processes", error=str(exc))
            return
        self._signal(signal.SIGHUP)

    async def wait(self, timeout_s: float) -> None:
        """After ``stop``: wait at most ``timeout_s`` seconds for every worker process to exit,
        then kill those left (their claims' leases run out and are taken up again, as after a
        crash) and remove the sockets' directory."""
        self.stop()
        tasks = [c.task for c in self._children if c.task is not None]
        if tasks:
            _, left = await asyncio.wait(tasks, timeout=timeout_s)
            if left:
                self._log.warning("stopping: worker processes killed", after_s=timeout_s)
                self._signal(signal.SIGKILL)
                await asyncio.wait(left, timeout=1.0)
                for task in left:
                    task.cancel()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def handoff(self, index: int) -> Handoff:
        """What worker process ``index`` (1 and up) is handed at its start: the rules in force
        now."""
        return Handoff(
            self._settings,
            self._endpoints,
            index,
            self._socket(index),
            dict(self._rule_files()),
        )

    def _socket(self, index: int) -> Path:
        """Where worker process ``index`` answers its metrics (no directory: none is started)."""
        return (self._dir or Path(tempfile.gettempdir())) / f"{process_name(index)}.sock"

    async def expositions(self) -> list[Reading]:
        """Each worker process's metrics, as ``generate_latest`` wrote them, by index and pid:
        the text None for one that did not answer within ``METRICS_TIMEOUT_S`` (logged) or
        is not running (exited, waiting to be started again)."""
        started = [c for c in self._children if c.process is not None]
        texts = await asyncio.gather(*map(self._metrics, started))
        return [
            Reading(c.index, c.process.pid, text, c.name)  # type: ignore[union-attr]
            for c, text in zip(started, texts, strict=True)
        ]

    async def _metrics(self, child: _Child) -> bytes | None:
        if not _running(child):
            return None
        try:
            connector = aiohttp.UnixConnector(path=str(self._socket(child.index)))
            timeout = aiohttp.ClientTimeout(total=METRICS_TIMEOUT_S)
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get("http://worker/metrics") as response,
            ):
                response.raise_for_status()
                return await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._log.info(
                "worker process's metrics not read",
                process=child.name,
                error=str(exc) or type(exc).__name__,  # a timeout's own text is empty
            )
            return None

    def _signal(self, sig: signal.Signals) -> None:
        for child in self._children:
            if _running(child):
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(sig)  # type: ignore[union-attr]

    async def _supervise(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        clock = self._clock or loop.time
        pause_s = FIRST_PAUSE_S
        while not self._stopping:
            started = clock()
            code = await self._run(child)
            if self._stopping:
                self._log.info("worker process exited", process=child.name, exit_code=code)
                return
            ran_s = clock() - started
            if ran_s >= STEADY_S:
                pause_s = FIRST_PAUSE_S
            self._log.error(
                "worker process exited; starting it again",
                process=child.name,
                exit_code=code,
                ran_s=round(ran_s, 1),
                retry_in_s=pause_s,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), pause_s)
            pause_s = min(LAST_PAUSE_S, pause_s * 2)

    async def _run(self, child: _Child) -> int | None:
        """Start ``child``'s process, hand it its start, and wait for it to exit: its exit
        code, or None when it could not be started (logged; started again after a pause)."""
        with contextlib.suppress(FileNotFoundError):
            # A crashed process's socket refuses the next one's bind.
            self._socket(child.index).unlink()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "receiver.processes.child",
                stdin=asyncio.subprocess.PIPE,
                env=_child_environment(),
            )
        except OSError as exc:  # out of processes or descriptors, the interpreter gone
            self._log.error(
                "worker process could not be started", process=child.name, error=str(exc)
            )
            return None
        child.process = process
        assert process.stdin is not None
        if self._stopping:
            # The stop came while it was being started: stop() found no process to signal.
            # Handed nothing yet, it holds nothing: it goes now, rather than run a worker,
            # claiming, until the stop's bound kills it.
            return await _ended(process)
        # The rules are read once the process is there to signal: a reload that swaps others
        # in from here on sends it SIGHUP, and one before is in what it is handed.
        start = self._encoded(child)
        if start is None:
            await _ended(process)
            return None
        try:
            process.stdin.write(start)
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it exited at once; its exit code says why
        try:
            return await process.wait()
        finally:
            # Its end of file is how a process learns that serve is gone; once it exited, the
            # pipe is closed here so that nothing is left open.
            if process.returncode is not None:
                process.stdin.close()

    def _encoded(self, child: _Child) -> bytes | None:
        """``child``'s handoff as it is written, or None (logged) when it is too large."""
        try:
            return encoded(self.handoff(child.index))
        except HandoffError as exc:
            self._log.error(
                "worker process could not be started", process=child.name, error=str(exc)
            )
            return None


async def _ended(process: asyncio.subprocess.Process) -> int:
    """Kill ``process``, handed nothing, and wait for it: its exit code."""
    process.kill()
    assert process.stdin is not None
    process.stdin.close()
    return await process.wait()


def _running(child: _Child) -> bool:
    return child.process is not None and child.process.returncode is None


def _child_environment() -> dict[str, str]:
    """serve's environment, with this very code first on the import path: a worker process
    runs what serve runs, however serve was started (an installed script, a checkout)."""
    env = dict(os.environ)
    here = str(Path(receiver.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    return env
