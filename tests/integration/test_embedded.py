"""Embedded PostgreSQL and Redis: they start under data_dir, take a password, listen on loopback
only, keep their data, belong to one live process at a time, and come back when they die."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio
import redis.exceptions
import structlog

from receiver.embedded import DataDirBusy, EmbeddedError, EmbeddedServices, postgres_bin_dir
from receiver.embedded.owner import live_owner
from receiver.embedded.postgres_server import PostgresProcess
from tests.support.polling import current, eventually
from tests.support.servers import server_missing

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(embedded_dir: Path) -> Path:
    try:
        postgres_bin_dir()
    except EmbeddedError as exc:
        server_missing(f"embedded PostgreSQL ({exc})")
    return embedded_dir


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=0.5):
            return True
    except OSError:
        return False


def _without_password(url: str, password: str | None = None) -> str:
    """The URL with its password removed, or replaced by ``password``."""
    parts = urlsplit(url)
    user = parts.username or ""
    auth = f"{user}:{password}" if password is not None else user
    netloc = f"{auth}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _pid(pid_file: Path) -> int:
    return int(pid_file.read_text().split()[0])


# -- passwords and loopback ------------------------------------------------------------------


async def test_start_stop_and_data_survives_a_restart(data_dir: Path) -> None:
    async with EmbeddedServices(data_dir) as first:
        assert first.database_url is not None
        assert first.redis_url is not None
        db_url, redis_url = first.database_url, first.redis_url
        assert urlsplit(db_url).hostname == "127.0.0.1"
        assert urlsplit(redis_url).hostname == "127.0.0.1"
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("CREATE TABLE kept (v text)")
            await conn.execute("INSERT INTO kept VALUES ('still here')")
        finally:
            await conn.close()
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await client.set("cooldown:rule", "1")
        finally:
            await client.aclose()
    assert first.database_url is None
    assert not _port_open(db_url)
    assert not _port_open(redis_url)
    assert (data_dir / "postgres" / "data" / "PG_VERSION").is_file()
    assert live_owner(data_dir) is None

    async with EmbeddedServices(data_dir) as second:
        assert second.database_url is not None
        assert second.redis_url is not None
        # The same passwords: they are kept beside the data.
        assert urlsplit(second.database_url).password == urlsplit(db_url).password
        conn = await asyncpg.connect(second.database_url)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "still here"
        finally:
            await conn.close()
        client = redis.asyncio.Redis.from_url(second.redis_url)
        try:
            assert await client.get("cooldown:rule") == b"1"
        finally:
            await client.aclose()


async def test_a_connection_without_the_password_is_refused(data_dir: Path) -> None:
    async with EmbeddedServices(data_dir) as services:
        assert services.database_url is not None
        assert services.redis_url is not None
        for name in ("postgres-password", "redis-password"):
            assert (data_dir / name).stat().st_mode & 0o777 == 0o600
        pg_password = (data_dir / "postgres-password").read_text().strip()
        assert urlsplit(services.database_url).password == pg_password
        # The password is on no command line, which every local user can read.
        for pid_file in (
            data_dir / "postgres" / "data" / "postmaster.pid",
            data_dir / "redis" / "redis.pid",
        ):
            cmdline = Path(f"/proc/{_pid(pid_file)}/cmdline").read_bytes()
            assert pg_password.encode() not in cmdline
            assert (data_dir / "redis-password").read_text().strip().encode() not in cmdline

        for url in (
            _without_password(services.database_url),
            _without_password(services.database_url, "wrong-password"),
        ):
            with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
                await asyncpg.connect(url, timeout=5)
        for url in (
            _without_password(services.redis_url),
            _without_password(services.redis_url, "wrong-password"),
        ):
            client = redis.asyncio.Redis.from_url(url)
            try:
                with pytest.raises(redis.exceptions.AuthenticationError):
                    await client.ping()
            finally:
                await client.aclose()
        # The right password still works, and both listen on 127.0.0.1 and nowhere else.
        conn = await asyncpg.connect(services.database_url)
        await conn.close()
        for url in (services.database_url, services.redis_url):
            assert _listening_addresses(urlsplit(url).port or 0) == {"127.0.0.1"}


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (/proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table, size in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                if size == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    found.add(f"ipv6:{address}")
    return found


async def test_a_cluster_made_without_a_password_gets_one(data_dir: Path) -> None:
    """A data directory from a version that trusted loopback connections."""
    old = PostgresProcess(data_dir / "postgres")
    old.start()
    conn = await asyncpg.connect(old.url())  # trust: no password
    await conn.close()
    old.stop()
    async with EmbeddedServices(data_dir, redis=False) as services:
        assert services.database_url is not None
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await asyncpg.connect(_without_password(services.database_url), timeout=5)
        conn = await asyncpg.connect(services.database_url)
        await conn.close()
    assert "trust" not in (data_dir / "postgres" / "data" / "pg_hba.conf").read_text()


def test_only_what_is_asked_for(data_dir: Path) -> None:
    with EmbeddedServices(data_dir, postgres=False) as services:
        assert services.database_url is None
        assert services.redis_url is not None
    assert not (data_dir / "postgres").exists()


async def test_extra_postgres_settings_are_set_over_the_defaults(data_dir: Path) -> None:
    # make bench loads pg_stat_statements this way: it must be there when the server starts.
    settings = {"shared_preload_libraries": "pg_stat_statements"}
    async with EmbeddedServices(data_dir, redis=False, postgres_settings=settings) as services:
        assert services.database_url is not None
        conn = await asyncpg.connect(services.database_url)
        try:
            assert await conn.fetchval("SHOW shared_preload_libraries") == "pg_stat_statements"
            assert await conn.fetchval("SHOW max_connections") == "200"  # the default kept
        finally:
            await conn.close()


# -- one owner at a time ---------------------------------------------------------------------

OWNER = textwrap.dedent(
    """
    import signal, sys
    from pathlib import Path
    from receiver.embedded import EmbeddedServices
    services = EmbeddedServices(Path(sys.argv[1]), command="owner under test").start()
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (services.stop(), sys.exit(0)))
    signal.pause()
    """
)


@pytest.fixture
def owner(data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that owns data_dir's servers (stopped with SIGTERM at the end, unless a
    test killed it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)


async def test_a_second_owner_is_refused_naming_the_first(
    data_dir: Path, owner: subprocess.Popen[str]
) -> None:
    record = live_owner(data_dir)
    assert record is not None
    assert record.pid == owner.pid
    with pytest.raises(DataDirBusy, match=f"PID {owner.pid} \\(owner under test\\)"):
        EmbeddedServices(data_dir, command="second").start()
    # The refusal touched nothing: the owner's servers still answer.
    assert _port_open(f"postgresql://127.0.0.1:{record.postgres_port}")
    assert _port_open(f"redis://127.0.0.1:{record.redis_port}")


async def test_a_command_uses_the_running_servers_and_leaves_them_running(
    data_dir: Path, owner: subprocess.Popen[str]
) -> None:
    record = live_owner(data_dir)
    assert record is not None
    postmaster = _pid(data_dir / "postgres" / "data" / "postmaster.pid")
    with EmbeddedServices(data_dir, redis=False, share=True, command="audit") as shared:
        assert shared.shared == record
        assert shared.database_url is not None
        assert urlsplit(shared.database_url).port == record.postgres_port
        conn = await asyncpg.connect(shared.database_url)
        try:
            assert await conn.fetchval("SELECT current_database()") == "remediator"
        finally:
            await conn.close()
    # Not stopped, not restarted: the same postmaster, and the owner still owns the directory.
    assert _pid(data_dir / "postgres" / "data" / "postmaster.pid") == postmaster
    assert Path(f"/proc/{postmaster}").exists()
    assert live_owner(data_dir) == record


async def test_servers_whose_owner_is_gone_are_replaced_and_their_data_kept(
    data_dir: Path, owner: subprocess.Popen[str]
) -> None:
    record = live_owner(data_dir)
    assert record is not None
    orphaned_pg = f"postgresql://127.0.0.1:{record.postgres_port}"
    orphaned_redis = f"redis://127.0.0.1:{record.redis_port}"
    shared = EmbeddedServices(data_dir, share=True).start()
    assert shared.redis_url is not None
    assert shared.database_url is not None
    client = redis.asyncio.Redis.from_url(shared.redis_url)
    try:
        await client.set("budget:rule", "3")
    finally:
        await client.aclose()
    shared.stop()

    owner.kill()  # kill -9: the servers are left running, with nobody to stop them
    owner.wait()
    assert _port_open(orphaned_pg)
    assert _port_open(orphaned_redis)
    assert live_owner(data_dir) is None

    with EmbeddedServices(data_dir) as services:
        assert services.shared is None
        assert services.redis_url is not None
        assert not _port_open(orphaned_pg)
        assert not _port_open(orphaned_redis)
        client = redis.asyncio.Redis.from_url(services.redis_url)
        try:
            assert await client.get("budget:rule") == b"3"
        finally:
            await client.aclose()


async def test_sharing_needs_the_server_the_owner_runs(data_dir: Path) -> None:
    with (
        EmbeddedServices(data_dir, postgres=False),
        pytest.raises(DataDirBusy, match="runs no PostgreSQL"),
    ):
        EmbeddedServices(data_dir, redis=False, share=True).start()


# -- supervision -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "pid_file"),
    [("PostgreSQL", "postgres/data/postmaster.pid"), ("Redis", "redis/redis.pid")],
)
async def test_a_dead_server_is_restarted_on_its_port(
    data_dir: Path, server: str, pid_file: str
) -> None:
    async with EmbeddedServices(data_dir) as services:
        assert services.database_url is not None
        assert services.redis_url is not None
        supervisor = asyncio.create_task(
            services.supervise(structlog.get_logger("test"), interval_s=0.05)
        )
        # The restart takes the services' start/stop lock: held here, it is an explicit gate
        # that keeps the server down while its state is looked at.
        gate = services._mutex
        try:
            gate.acquire()
            try:
                dead = _pid(data_dir / pid_file)
                os.kill(dead, signal.SIGKILL)
                await eventually(current(lambda: services.problem(server)))
                assert services.problem(server) == (
                    f"embedded {server} exited; restarting (attempt 1)"
                )
            finally:
                gate.release()
            await eventually(
                current(lambda: services.problem(server)),
                lambda problem: problem is None,
            )
            assert _pid(data_dir / pid_file) != dead
            # The same URLs work again: same port, same password.
            conn = await asyncpg.connect(services.database_url, timeout=10)
            await conn.close()
            client = redis.asyncio.Redis.from_url(services.redis_url)
            try:
                assert await client.ping()
            finally:
                await client.aclose()
        finally:
            supervisor.cancel()
            with pytest.raises(asyncio.CancelledError):
                await supervisor
