"""A PostgreSQL connection over TLS that fails (remediations/postgres/connection.py), against a
real PostgreSQL serving TLS with a certificate made here: Debian's build (the embedded wheel's
has no SSL: "SSL is not supported by this build").

Before, a certificate from a CA the DSN's ``sslrootcert`` does not hold read "did not answer
... failed reading its answer" (an ``ssl.SSLError`` is an OSError of no errno known as a
connection failure) with no word of what fixes it; and ``sslmode=verify-full`` without a root
certificate file (asyncpg's ClientConfigurationError, an InterfaceError) was retried and
waited for as an outage, for a DSN that can never work as it is.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediations.base import ActionRefused, TransientActionError
from remediations.postgres.connection import PostgresConnection
from remediations.retrying import RetryPolicy
from remediations.unreached import Unreached, how_unreached
from tests.support import pki
from tests.support.postgres import PostgresServer
from tests.support.servers import server_missing

FAST = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.01, jitter=0.0, request_timeout=5)


def _ssl_build() -> Path:
    """Debian's PostgreSQL binaries (built with OpenSSL), the newest."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        server_missing("Debian's PostgreSQL, built with SSL (apt-get install postgresql)")
    return found[-1].parent


class TlsPostgres:
    def __init__(self, server: PostgresServer, ca: Path, other_ca: Path) -> None:
        self.server = server
        self.ca = ca
        self.other_ca = other_ca

    def dsn(self, options: str) -> str:
        return f"{self.server.url('postgres')}?{options}"


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPostgres]:
    files = tmp_path_factory.mktemp("pg-tls")
    ca, other = pki.make_ca(), pki.make_ca()
    pair = pki.issue(ca, pki.name("127.0.0.1"), server=True, ips=["127.0.0.1"])
    server = PostgresServer.create(bin_dir=_ssl_build())
    try:
        data = server.data_dir
        owner = data.stat()
        for name, pem, private in (
            ("server.crt", pki.cert_pem(pair), False),
            ("server.key", pki.key_pem(pair), True),
        ):
            pki.write(data / name, pem, private=private)
            # The server runs as the data directory's owner and reads its key only when it
            # is that user's alone.
            os.chown(data / name, owner.st_uid, owner.st_gid)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        server.start()
        yield TlsPostgres(
            server,
            pki.write(files / "ca.pem", pki.cert_pem(ca)),
            pki.write(files / "other-ca.pem", pki.cert_pem(other)),
        )
    finally:
        server.destroy()


async def select_one(conn: PostgresConnection) -> int:
    try:
        rows = await conn.fetch("check", "SELECT 1 AS one")
        return int(rows[0]["one"])
    finally:
        await conn.close()


async def test_a_certificate_the_sslrootcert_does_not_vouch_for_is_said_as_tls(
    tls_postgres: TlsPostgres,
) -> None:
    conn = PostgresConnection(
        "orders",
        tls_postgres.dsn(f"sslmode=verify-full&sslrootcert={tls_postgres.other_ca}"),
        policy=FAST,
    )
    with pytest.raises(TransientActionError) as raised:
        await select_one(conn)
    assert not raised.value.may_have_acted
    assert how_unreached(raised.value) == Unreached(
        "could not be reached over TLS", "failed its TLS handshake"
    )
    assert raised.value.message.startswith(
        "PostgreSQL 'orders': check: gave up after 2 attempts: TLS: certificate verify failed: "
        "unable to get local issuer certificate; set the DSN's sslrootcert "
        "(postgres.databases.orders.dsn_file) to the PEM bundle of the CA that signed the "
        "server's certificate"
    ), raised.value.message
    # The right CA: the same server answers.
    trusted = PostgresConnection(
        "orders",
        tls_postgres.dsn(f"sslmode=verify-full&sslrootcert={tls_postgres.ca}"),
        policy=FAST,
    )
    assert await select_one(trusted) == 1


async def test_verify_full_without_a_root_certificate_is_refused_at_once(
    tls_postgres: TlsPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncpg looks for ~/.postgresql/root.crt: a home without one, whoever runs the tests.
    monkeypatch.setenv("HOME", str(tmp_path))
    conn = PostgresConnection("orders", tls_postgres.dsn("sslmode=verify-full"), policy=FAST)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ActionRefused) as raised:
        await select_one(conn)
    assert not raised.value.may_have_acted
    assert raised.value.message == (
        "PostgreSQL 'orders': check: the DSN asks for what this client cannot do (root "
        f'certificate file "{tmp_path}/.postgresql/root.crt" does not exist or cannot be '
        "accessed): fix postgres.databases.orders.dsn_file"
    ), raised.value.message
    assert asyncio.get_running_loop().time() - started < 5
