"""Redacting what a request to a URL carried from a text: the URL's secret parts (a Slack
webhook's path is its credential) and the header values that are credentials, as configured
and as aiohttp sends them (yarl requotes a URL). Used by ``remediations.http.post`` on every
excerpt of an answer and every failure's text. Pure.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from yarl import URL

__all__ = ["REDACTED", "host_of", "redact_url", "redactor"]

REDACTED = "[redacted]"
# A URL's path segment or query value this long is redacted on its own too (a Slack or Discord
# webhook token, echoed without the rest of the path); shorter ones ("services", "v1") are
# names, and redacting them would only blur the excerpt.
_TOKEN_LENGTH = 12
# Shorter than this is no credential, and replacing it would blank every "a" or "pw" of a text.
_SHORTEST_SECRET = 4


def host_of(url: str) -> str:
    """The host (and port) of ``url``, for messages: never the path, query or credentials.
    An IPv6 address keeps its brackets (``[::1]:8080``), as a URL writes it: without them its
    port reads as part of the address."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def redactor(url: str, secrets: Iterable[str] = ()) -> Callable[[str], str]:
    """A function replacing, in a text, every secret a request to ``url`` carried with
    ``[redacted]``: each of ``secrets`` (header values read from files; for ``Bearer x`` the
    ``x`` alone too), and the URL's userinfo, path, query, fragment, and its long path segments
    and query values, each as written, as sent (``_forms``: yarl requotes it) and
    percent-decoded. Exact: nothing else is touched, and
    nothing shorter than 4 characters (it cannot be told from ordinary words)."""
    found: set[str] = set()
    for form in _forms(url):
        found |= _url_secrets(form)
    for value in secrets:
        found.add(value)
        scheme, _, credential = value.partition(" ")
        if credential and scheme.isalpha():
            found.add(credential.strip())
            if scheme.lower() == "basic":
                # What it encodes too, and its password alone: a server that echoes the
                # decoded credential in its error (user:password) would bypass the rest.
                found.update(_basic_parts(credential.strip()))
    found |= {unquote(x) for x in found}
    # Longest first, so a secret containing another is replaced whole.
    ordered = sorted((x for x in found if len(x) >= _SHORTEST_SECRET), key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, REDACTED)
        return text

    return redact


def _forms(url: str) -> tuple[str, ...]:
    """``url`` as configured and as aiohttp sends it. yarl requotes a URL before it is sent
    (``%2f`` in a query becomes ``/`` while ``%2b`` becomes ``%2B``, ``%6f`` becomes ``o``, a
    space ``%20``): that form is what the server's request line holds, what it echoes, and what
    aiohttp's own errors quote (``url='...'``), and neither ``unquote`` nor the configured
    spelling matches it."""
    try:
        sent = str(URL(url))
    except (ValueError, TypeError):  # not sendable: nothing went out in another form
        return (url,)
    return (url,) if sent == url else (url, sent)


def _url_secrets(url: str) -> set[str]:
    """The parts of ``url`` that may be secrets, as written: the whole, the userinfo, path,
    query and fragment, the long path segments and the long query values (raw and decoded)."""
    parts = urlsplit(url)
    found = {url}
    found.update(str(x) for x in (parts.username, parts.password, parts.query, parts.fragment) if x)
    if len(parts.path) > 1:
        found.add(parts.path)
    found.update(x for x in parts.path.split("/") if len(x) >= _TOKEN_LENGTH)
    raw_values = (pair.partition("=")[2] for pair in parts.query.split("&"))
    found.update(v for v in raw_values if len(v) >= _TOKEN_LENGTH)
    found.update(v for _, v in parse_qsl(parts.query) if len(v) >= _TOKEN_LENGTH)
    return found


def _basic_parts(encoded: str) -> list[str]:
    """``user:password`` and ``password`` of a Basic credential; none when it does not
    decode (then it is no Basic credential to echo)."""
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return []
    return [decoded, decoded.partition(":")[2]]


def redact_url(text: str, url: str) -> str:
    """``text`` without ``url`` or its path and query (where webhook secrets live), as
    configured or as sent (``_forms``): the URL is shown as ``scheme://host/…``."""
    for form in _forms(url):
        parts = urlsplit(form)
        secret = parts.path + (f"?{parts.query}" if parts.query else "")
        text = text.replace(form, f"{parts.scheme}://{host_of(form)}/…")
        text = text.replace(secret, "/…") if len(secret) > 1 else text
    return text
