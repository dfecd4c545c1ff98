"""Certificates for Redis over TLS in tests: a CA, one certificate the servers (and sentinels)
serve and replicate with, valid for 127.0.0.1 and localhost, and a client certificate for the
service, since Redis asks clients for one by default (``tls-auth-clients yes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.pki import cert_pem, issue, key_pem, make_ca, name, write

__all__ = ["RedisTls", "write_redis_pki"]


@dataclass(frozen=True)
class RedisTls:
    """The PEM files under one directory (keys 0600)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_args(self) -> list[str]:
        """redis-server's arguments to serve TLS only (its ``port`` then given as
        ``--tls-port``, plain ``--port 0``) and to replicate and watch masters over it."""
        return [
            "--tls-cert-file", str(self.server_cert), "--tls-key-file", str(self.server_key),
            "--tls-ca-cert-file", str(self.ca), "--tls-replication", "yes",
        ]  # fmt: skip

    def client_options(self) -> dict[str, Any]:
        """redis-py's options for a TLS connection with the client certificate."""
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.client_cert),
            "ssl_keyfile": str(self.client_key),
        }


def write_redis_pki(directory: Path) -> RedisTls:
    """Make a CA and the servers' and the client's pairs under ``directory`` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    # Servers connect to each other (replication, a sentinel to its master) with the same
    # certificate, so it serves and authenticates a client both.
    server = issue(
        ca, name("redis"), server=True, client=True, dns_names=("localhost",), ips=("127.0.0.1",)
    )
    client = issue(ca, name("remediator"), server=False)
    return RedisTls(
        ca=write(directory / "ca.crt", cert_pem(ca)),
        server_cert=write(directory / "redis.crt", cert_pem(server)),
        server_key=write(directory / "redis.key", key_pem(server), private=True),
        client_cert=write(directory / "client.crt", cert_pem(client)),
        client_key=write(directory / "client.key", key_pem(client), private=True),
    )
