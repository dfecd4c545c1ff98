"""The control plane's child processes (tests/support/kube.py): started with their output in a
log file each, waited for until they answer over HTTP, and stopped newest first.

A failure to start or to answer raises the error the owner chose (``ControlPlaneError`` for
the control plane), with the last lines of every log in its message.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from receiver.embedded.process import free_port
from tests.support.polling import eventually_blocking


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"    <cannot read {path}: {exc}>"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class _Component:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]


class ProcessGroup:
    """Processes started in ``dir``, each logging to ``dir/<name>.log``.

    ``error`` makes the exception raised when one exits early or never answers.
    """

    def __init__(self, dir: Path, error: Callable[[str], Exception]) -> None:
        self.dir = dir
        self._error = error
        self._components: list[_Component] = []

    @property
    def log_files(self) -> dict[str, Path]:
        """Each process's name -> its log file."""
        return {c.name: c.log_path for c in self._components}

    def process(self, name: str) -> subprocess.Popen[bytes]:
        """The running process named ``name``."""
        [comp] = [c for c in self._components if c.name == name]
        return comp.proc

    def spawn(self, name: str, argv: list[str]) -> None:
        """Start ``argv`` in ``dir`` with stdout and stderr to ``dir/<name>.log``."""
        log_path = self.dir / f"{name}.log"
        log_file = log_path.open("wb")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # a Ctrl-C in the test terminal goes to pytest only
            )
        except BaseException:
            log_file.close()
            raise
        self._components.append(_Component(name, proc, log_path, log_file))

    def wait_http(
        self,
        name: str,
        url: str,
        ctx: ssl.SSLContext | None,
        ok: Callable[[bytes], bool],
        timeout_s: float,
    ) -> None:
        """Poll ``url`` until its body is ``ok``, for at most ``timeout_s`` seconds; raises the
        group's error if it never is or if any process exits meanwhile."""

        def probe() -> str | None:
            """None once ``url`` answers as ``ok`` wants, else what it answered."""
            for comp in self._components:
                if comp.proc.poll() is not None:
                    self.fail(f"{comp.name} exited with code {comp.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:  # noqa: S310
                    body = resp.read()
                    return None if ok(body) else f"HTTP {resp.status}: {body[:300]!r}"
            except urllib.error.HTTPError as exc:
                return f"HTTP {exc.code}: {exc.read()[:300]!r}"
            except (OSError, ssl.SSLError) as exc:
                return repr(exc)

        try:
            eventually_blocking(
                probe,
                lambda answer: answer is None,
                timeout_s=timeout_s,
                interval_s=0.25,
                what=f"{name} ready at {url}",
            )
        except AssertionError as exc:
            self.fail(str(exc))

    def fail(self, message: str) -> None:
        """Raise the group's error: ``message`` and the last lines of every log."""
        parts = [message]
        for comp in self._components:
            comp.log_file.flush()
            parts.append(f"--- last lines of {comp.log_path} ---\n{_tail(comp.log_path)}")
        raise self._error("\n".join(parts))

    def stop(self, timeout_s: float) -> None:
        """Stop the processes newest first: SIGTERM, then SIGKILL after ``timeout_s`` each."""
        for comp in reversed(self._components):
            if comp.proc.poll() is None:
                comp.proc.send_signal(signal.SIGTERM)
                try:
                    comp.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    comp.proc.kill()
                    comp.proc.wait(timeout=10)
            comp.log_file.close()
        self._components.clear()


def distinct_ports(n: int) -> list[int]:
    """``n`` free loopback ports, no two the same."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports
