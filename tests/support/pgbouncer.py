"""A real PgBouncer (Debian's ``/usr/sbin/pgbouncer``, 1.18) in ``pool_mode = transaction`` (or,
``start(mode="session")``, session; ``"statement"``, a user's mistake) in front of the
session's test PostgreSQL, the way users run the service behind one. ``PgBouncer.admin`` runs
a command of its admin console (``PAUSE``, ``KILL``, ``SET pool_mode = ...``), as its operator.

Clients log in to PgBouncer with SCRAM-SHA-256 and a password of its ``userlist.txt`` (the test
server's own password when it has one, a generated one when it trusts loopback); PgBouncer logs
in to PostgreSQL as the same user with that password. Every database name is routed (``* =``),
so each test's fresh database is reachable through it. ``pgbouncer`` is the session's fixture;
``PgBouncer.url(name)`` a database through it. As root PgBouncer (which refuses to run as root)
runs as the unprivileged account the embedded PostgreSQL uses.

Missing PgBouncer: ``server_missing`` (a skip on a developer's machine, a failure under CI).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from receiver.embedded.process import free_port, unprivileged_account
from tests.support.daemons import end
from tests.support.polling import eventually_blocking
from tests.support.postgres import PostgresServer
from tests.support.servers import server_missing

__all__ = ["PgBouncer", "PoolMode", "pgbouncer", "start"]

PoolMode = Literal["transaction", "session", "statement"]

DEBIAN_BINARY = Path("/usr/sbin/pgbouncer")  # not on a user's PATH: Debian puts it in sbin


def _binary() -> str:
    found = shutil.which("pgbouncer") or (str(DEBIAN_BINARY) if DEBIAN_BINARY.is_file() else None)
    if found is None:
        server_missing("PgBouncer (apt-get install pgbouncer; hack/e2e/install.sh)")
    return found


@dataclass
class PgBouncer:
    """One running PgBouncer: its process, port, login and work directory (config, log)."""

    proc: subprocess.Popen[bytes]
    port: int
    user: str
    password: str
    workdir: Path

    def url(self, database: str) -> str:
        """``database`` through PgBouncer, with the login it accepts."""
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return urlunsplit(("postgresql", f"{auth}@127.0.0.1:{self.port}", f"/{database}", "", ""))

    def through(self, direct_url: str) -> str:
        """The database of ``direct_url`` (a URL of the test PostgreSQL) through PgBouncer."""
        return self.url(urlsplit(direct_url).path.lstrip("/"))

    async def admin(self, command: str) -> None:
        """Run ``command`` on PgBouncer's admin console (``PAUSE db``, ``KILL db``, ``SET
        pool_mode = statement``, ``RELOAD``), as the user it logs in (``admin_users``). The
        console speaks only the simple query protocol: asyncpg's ``execute`` without
        arguments, no ``SHOW`` rows."""
        conn = await asyncpg.connect(self.url("pgbouncer"), statement_cache_size=0)
        try:
            await conn.execute(command)
        finally:
            await conn.close()

    def log_tail(self, chars: int = 8000) -> str:
        try:
            return (self.workdir / "pgbouncer.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        end(self.proc, 10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _config(
    pg: PostgresServer,
    port: int,
    workdir: Path,
    pool_size: int,
    round_robin: bool,
    mode: PoolMode,
    user: str,
) -> str:
    return f"""\
[databases]
* = host={pg.host} port={pg.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {workdir / "userlist.txt"}
pool_mode = {mode}
default_pool_size = {pool_size}
max_client_conn = 500
; LIFO reuse of server connections (the default, spelled out): the statement-cache test relies
; on the most recently released server connection being the next one handed out. 1: FIFO, for
; a pooler in front of a round-robin address.
server_round_robin = {int(round_robin)}
log_connections = 0
log_disconnections = 0
; The admin console (database "pgbouncer"): PAUSE, RESUME, KILL, RECONNECT, RELOAD, SET.
admin_users = {user}
"""


def _answers(proc: subprocess.Popen[bytes], port: int) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"pgbouncer exited at start-up with code {proc.returncode}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start(
    pg: PostgresServer,
    *,
    pool_size: int = 4,
    round_robin: bool = False,
    mode: PoolMode = "transaction",
) -> PgBouncer:
    """PgBouncer in ``mode`` (``pool_mode``) on a free loopback port in front of ``pg``, ready,
    with at most ``pool_size`` server connections a database and user, handed out LIFO (its
    default) or, with ``round_robin``, FIFO (``server_round_robin = 1``). A client's query
    waits for a server connection up to PgBouncer's ``query_wait_timeout`` (120 s)."""
    binary = _binary()
    account = unprivileged_account()
    workdir = Path(tempfile.mkdtemp(prefix="remediator-pgbouncer-"))
    password = pg.password or secrets.token_urlsafe(18)
    port = free_port()
    (workdir / "pgbouncer.ini").write_text(
        _config(pg, port, workdir, pool_size, round_robin, mode, pg.user)
    )
    # userlist.txt: "user" "password", a double quote doubled.
    quoted = password.replace('"', '""')
    (workdir / "userlist.txt").write_text(f'"{pg.user}" "{quoted}"\n')
    popen: dict[str, Any] = {}
    if account is not None:
        popen = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        for path in (workdir, *workdir.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(workdir / "userlist.txt", 0o600)
    with (workdir / "pgbouncer.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, str(workdir / "pgbouncer.ini")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
            **popen,
        )
    bouncer = PgBouncer(proc, port, pg.user, password, workdir)
    try:
        eventually_blocking(lambda: _answers(proc, port), what="pgbouncer listening")
    except BaseException as exc:
        log_text = bouncer.log_tail()
        bouncer.stop()
        server_missing(f"PgBouncer ({exc}):\n{log_text}")
    return bouncer


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PostgresServer) -> Iterator[PgBouncer]:
    """The session's PgBouncer (transaction pooling) in front of ``pg_server``."""
    bouncer = start(pg_server)
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def own_pooler(pg_server: PostgresServer) -> Iterator[PgBouncer]:
    """A transaction pooler of the test's own, in front of ``pg_server``: one it may pause,
    disable, kill or switch to another mode without touching the session's."""
    bouncer = start(pg_server)
    try:
        yield bouncer
    finally:
        bouncer.stop()
