"""The guards' Redis over TLS: that the files the settings name hold what they should.

``redis.tls.ca_file`` must hold PEM certificates (the CA the servers' certificates are
checked against), and ``redis.tls.cert_file`` with ``redis.tls.key_file`` a certificate and
its unencrypted private key. Checked at start-up by loading them the way the client will
(``ssl.SSLContext``, as redis-py's TLS connections do): a wrong file would otherwise show only
as every admission failing on its first connection, the guards closed, with a TLS error in
each run's log line. Which settings may be set together is ``redis_mode``'s (pure) check.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from receiver.config.redis_mode import RedisSettings
from receiver.config.settings import ConfigError

__all__ = ["check_tls_files", "sentinel_tls_options", "tls_options"]


def tls_options(settings: RedisSettings) -> dict[str, Any]:
    """redis-py's options for the TLS files set (``ssl_ca_certs``, ``ssl_certfile``,
    ``ssl_keyfile``), as paths; empty when none is."""
    files = {
        "ssl_ca_certs": settings.redis_tls_ca_file,
        "ssl_certfile": settings.redis_tls_cert_file,
        "ssl_keyfile": settings.redis_tls_key_file,
    }
    return {option: str(path) for option, path in files.items() if path is not None}


def sentinel_tls_options(settings: RedisSettings) -> dict[str, Any]:
    """redis-py's options for TLS to the sentinels and the master they name: ``ssl`` and the
    files (``redis.sentinel.tls``, ``redis.tls.*``); empty without ``redis.sentinel.tls``."""
    if not settings.redis_sentinel_tls:
        return {}
    return {"ssl": True, **tls_options(settings)}


def _no_password() -> bytes:
    # An encrypted key is refused, not asked for: OpenSSL's own callback would read a
    # passphrase from the terminal, which a service has none of.
    return b""


def _reason(exc: OSError) -> str:
    """OpenSSL's reason (``KEY_VALUES_MISMATCH``), else the error's text without the place in
    CPython's source that Python appends to it (``[SSL] PEM lib (_ssl.c:3905)``)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason
    return re.sub(r" \(_ssl\.c:\d+\)$", "", exc.strerror or str(exc))


def check_tls_files(settings: RedisSettings, name: Callable[[str], str]) -> None:
    """Load the TLS files that are set. ConfigError naming the setting and the file, with
    OpenSSL's reason (``NO_CERTIFICATE_OR_CRL_FOUND``, ``KEY_VALUES_MISMATCH``, ...), when
    one cannot be read or does not hold what it should."""
    ca: Path | None = settings.redis_tls_ca_file
    try:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    except OSError as exc:
        raise ConfigError(
            f"{name('redis_tls_ca_file')}: {ca} does not hold PEM certificates one can read"
            f" ({_reason(exc)})"
        ) from None
    cert, key = settings.redis_tls_cert_file, settings.redis_tls_key_file
    if cert is None or key is None:
        return
    try:
        context.load_cert_chain(str(cert), str(key), password=_no_password)
    except OSError as exc:
        raise ConfigError(
            f"{name('redis_tls_cert_file')} and {name('redis_tls_key_file')}: {cert} and"
            f" {key} are not a PEM certificate and its unencrypted private key"
            f" ({_reason(exc)})"
        ) from None
