"""Debian's PostgreSQL server, beside the embedded one the tests run on: a server built with
lz4 and JIT (``test_audit_compression.py``, ``test_audit_seal_jit.py``). hack/e2e/install.sh
installs the ``postgresql`` package where no major is installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from receiver.embedded.process import ServerError
from receiver.store.migrate import migrate
from tests.support.postgres import PostgresServer
from tests.support.servers import server_missing

__all__ = ["debian_bin", "debian_server", "migrated_database"]


def debian_bin() -> Path | None:
    """The bin directory of the newest Debian PostgreSQL major installed, or None."""
    majors = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "postgres").is_file()]
    return max(majors, key=lambda d: int(d.parent.name), default=None)


@contextmanager
def debian_server() -> Iterator[PostgresServer]:
    """A started cluster of Debian's newest PostgreSQL, destroyed on exit; missing (a skip, or
    a failure under CI) when none is installed or it does not start."""
    bin_dir = debian_bin()
    if bin_dir is None:
        server_missing("Debian's PostgreSQL (apt-get install postgresql; hack/e2e/install.sh)")
    try:
        server = PostgresServer.create(bin_dir=bin_dir)
        server.start()
    except (ServerError, OSError) as exc:
        server_missing(f"Debian's PostgreSQL ({exc})")
    try:
        yield server
    finally:
        server.destroy()


async def migrated_database(server: PostgresServer, prefix: str) -> str:
    """The URL of a new database on ``server`` (named ``prefix`` and a random suffix),
    migrated to the end. The caller drops it, or leaves it to the server's removal."""
    name = f"{prefix}_{os.urandom(6).hex()}"
    admin = await asyncpg.connect(server.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(server.url(name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return server.url(name)
