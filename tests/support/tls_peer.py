"""A real HTTPS peer for the tests: ``tests.support.peer``'s server behind TLS, with the
certificate a test made (``tests.support.pki``), and the CA file a client may trust."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from tests.support import pki
from tests.support.peer import Handler

__all__ = ["TlsCase", "serving_tls", "tls_case"]


@dataclass(frozen=True)
class TlsCase:
    """A server's certificate (None: the server speaks plain HTTP) and the CA file that
    signed it (``ca``), or another CA's (``other_ca``)."""

    pair: pki.KeyPair | None
    ca: Path
    other_ca: Path


def tls_case(tmp: Path, *, expired: bool = False, host: str = "127.0.0.1") -> TlsCase:
    """A CA and a server certificate it issued for ``host`` (an IP address or a DNS name);
    ``expired``: one that ran out an hour ago."""
    ca = pki.make_ca()
    other = pki.make_ca()
    names = {"ips": [host]} if host[0].isdigit() else {"dns_names": [host]}
    pair = pki.issue(ca, pki.name(host), server=True, expired=expired, **names)  # type: ignore[arg-type]
    return TlsCase(
        pair,
        pki.write(tmp / "ca.pem", pki.cert_pem(ca)),
        pki.write(tmp / "other-ca.pem", pki.cert_pem(other)),
    )


@asynccontextmanager
async def serving_tls(handler: Handler, pair: pki.KeyPair | None, tmp: Path) -> AsyncIterator[str]:
    """Serve every request with ``handler`` on a free loopback port over TLS with ``pair``'s
    certificate (plain HTTP when None) until the block ends; its base URL, always
    ``https://127.0.0.1:PORT`` (for a plain server too: a URL that is wrong that way)."""
    context = None
    if pair is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(
            pki.write(tmp / "server.pem", pki.cert_pem(pair)),
            pki.write(tmp / "server.key", pki.key_pem(pair), private=True),
        )
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
