"""TLS failures said as what they are, and the CA bundle an endpoint or a channel trusts.

aiohttp raises a refused certificate (``ClientConnectorCertificateError``) and a failed
handshake (``ClientConnectorSSLError``) as subclasses of ``ClientConnectorError``, the class of
a connection refused or a host unreachable; asyncpg and redis-py raise ``ssl.SSLError``, an
``OSError``. Read as such, a certificate signed by an unknown CA, expired or for another host,
or a server speaking plain HTTP on an https URL, read "could not be reached ... never
connected", and sent whoever reads it looking for a network fault when the fix is a CA bundle,
a certificate or the URL's scheme. ``tls_failure`` finds such a failure in an exception's chain
and says it, with what fixes it (``TlsFailure.hint``).

The handshake failed before any request was written: nothing was sent to the server
(aiohttp writes the request only over a connection whose handshake and verification passed).
Verification is never turned off here: ``ca_context`` only replaces the CAs trusted.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp

__all__ = ["TlsFailure", "TlsTrust", "ca_context", "tls_failure", "tls_words"]

# How far down ``__cause__`` / ``__context__`` a TLS failure is looked for.
_DEPTH = 5

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) of a certificate no trusted CA vouches for: an
# unknown or private CA, a self-signed certificate, a chain the server did not send whole.
_UNTRUSTED = frozenset({2, 18, 19, 20, 21})
_EXPIRED, _NOT_YET_VALID = 10, 9
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH

# OpenSSL's reasons when what answered is no TLS server (a plain HTTP one answers a
# ClientHello with "HTTP/1.1 400 ..."), by OpenSSL version.
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)


@dataclass(frozen=True, slots=True)
class TlsTrust:
    """What an endpoint or a channel trusts: ``setting`` is its CA bundle's setting
    (``http.endpoints.<name>.ca_file``), named in every TLS failure's hint; ``ca_file`` the
    file it is set to, None for the system's CAs (``SSL_CERT_FILE`` replaces those); ``context``
    the SSL context loaded from it (``ca_context``), passed to aiohttp as ``ssl=``."""

    setting: str
    ca_file: Path | None = None
    context: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class TlsFailure:
    """``what``: the failure, ``"TLS: certificate verify failed: unable to get local issuer
    certificate"``; ``hint``: what fixes it; ``fixable_here``: whether a CA bundle setting can
    fix it (a certificate no trusted CA vouches for) rather than the server or the URL."""

    what: str
    hint: str
    fixable_here: bool

    def words(self) -> str:
        return f"{self.what}; {self.hint}"


def ca_context(path: Path) -> ssl.SSLContext:
    """A verifying client context trusting only the PEM certificates in ``path`` (host names
    checked, as ``ssl.create_default_context``). Raises ValueError naming the file and what is
    wrong with it: missing, unreadable, or holding no PEM certificate (OpenSSL's reason)."""
    if not path.is_file():
        missing = "not a file" if path.exists() else "no such file"
        raise ValueError(f"{path}: {missing} (it must hold the PEM CA certificates)")
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path} does not hold PEM CA certificates one can read ({_reason(exc)})"
        ) from None


def _reason(exc: BaseException) -> str:
    """OpenSSL's reason (``NO_CERTIFICATE_OR_CRL_FOUND``), else the text without CPython's
    source position (``(_ssl.c:1006)``)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return re.sub(r" \(_ssl\.c:\d+\)$", "", text)


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` ``exc`` is or carries (aiohttp keeps it as ``os_error``), or
    None; the chain of causes is followed ``_DEPTH`` deep."""
    seen: BaseException | None = exc
    for _ in range(_DEPTH):
        if seen is None:
            return None
        if isinstance(seen, aiohttp.ClientConnectorCertificateError):
            error = seen.certificate_error
            return error if isinstance(error, ssl.SSLError) else None
        if isinstance(seen, aiohttp.ClientConnectorError) and isinstance(
            seen.os_error, ssl.SSLError
        ):
            return seen.os_error
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def tls_failure(exc: BaseException, trust: TlsTrust, host: str) -> TlsFailure | None:
    """What TLS failure ``exc`` (or a failure it is chained to) is, for a connection to
    ``host`` (``host:port``; ``""`` when unknown: "the server") under ``trust``; None when it
    is none. The hint names ``trust.setting`` where a CA bundle fixes it, and the server or the
    URL where it does not."""
    error = _ssl_error(exc)
    if error is None:
        return None
    where = f" for {host}" if host else ""
    if isinstance(error, ssl.SSLCertVerificationError):
        message = _reason_text(error.verify_message or _reason(error))
        what = f"TLS: certificate verify failed: {message}{where}"
        return _verify_hint(what, error.verify_code, trust)
    reason = str(error.reason or "")
    if reason in _NOT_TLS:
        return TlsFailure(
            f"TLS: the server{f' at {host}' if host else ''} did not answer in TLS ({reason})",
            "it speaks plain HTTP there, or that port is not its TLS port: give the URL "
            "http:// if it takes no TLS, or its TLS port",
            False,
        )
    return TlsFailure(
        f"TLS: handshake failed{f' with {host}' if host else ''} ({_reason(error)})",
        "the server's TLS settings and this client's do not agree (protocol version, "
        "ciphers, a client certificate asked for): check the server's TLS configuration",
        False,
    )


def tls_words(exc: BaseException, setting: str) -> str | None:
    """``exc``'s TLS failure in words with its fix (``TlsFailure.words``), for a client whose
    CA bundle is ``setting`` and whose error names the host itself (asyncpg, redis-py); None
    when ``exc`` is no TLS failure."""
    failure = tls_failure(exc, TlsTrust(setting), "")
    return failure.words() if failure is not None else None


def _reason_text(text: str) -> str:
    # OpenSSL ends some with a full stop ("... not valid for '127.0.0.1'."): " for host" follows.
    return re.sub(r" \(_ssl\.c:\d+\)$", "", text).rstrip(".")


def _verify_hint(what: str, code: int, trust: TlsTrust) -> TlsFailure:
    if code in _UNTRUSTED:
        if trust.ca_file is None:
            hint = (
                f"set {trust.setting} to the PEM bundle of the CA that signed the server's "
                "certificate (a private CA), or have the server send its whole chain"
            )
        else:
            hint = (
                f"{trust.setting} ({trust.ca_file}) does not hold the CA that signed the "
                "server's certificate: add it there, or have the server send its whole chain"
            )
        return TlsFailure(what, hint, True)
    if code == _EXPIRED:
        return TlsFailure(
            what, "renew the server's certificate (or check this host's clock)", False
        )
    if code == _NOT_YET_VALID:
        return TlsFailure(
            what, "the server's certificate is not valid yet: check this host's clock", False
        )
    if code in _NAME_MISMATCH:
        return TlsFailure(
            what,
            "the server's certificate is not for the URL's host name: give the URL a name "
            "the certificate holds, or reissue the certificate for that name",
            False,
        )
    return TlsFailure(what, f"check the server's certificate chain, and {trust.setting}", False)
