"""What may be written in the configuration itself rather than read from a file: a URL or a
header that holds no credential (``clear_url``, ``clear_header``), what of an endpoint's URL
the audit log records (``url_origin``), how a URL writes a host and port (``host_port``), and
the one form of the service's own address links are built under (``base_url``).
Pure. Whatever fails these checks must come from a
``*_file``: the configuration is recorded in ``service.started``, an append-only log that can
never forget a secret.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "base_url",
    "check_url",
    "clear_header",
    "clear_url",
    "connect_host",
    "host_port",
    "url_origin",
]


def check_url(url: str) -> str:
    """``url`` when it is http(s)://host[:port]... with a port from 1 to 65535; ValueError
    otherwise (without echoing it, nor urllib's message, which quotes the port as written: a
    piece of a password whose `/` ended the authority early)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL must be http:// or https:// with a host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        # Else taken here and refused by the client at every call: `:99999` raised a
        # ValueError out of each step and notification that used it.
        raise ValueError("the URL's port is not a number from 1 to 65535")
    return url


# A blank, a control character (C0, DEL, C1) or a backslash anywhere in a URL: a browser drops
# or encodes the first two and reads a backslash as `/`, so a link written with one is not the
# address the service serves.
_NOT_IN_URL = re.compile(r"[\x00-\x20\x7f-\x9f\s\\]")
# A `%` that does not begin a percent-escape (`%` and two hex digits, RFC 3986 section 2.1):
# a proxy or a server may refuse a path holding one (400), or read it otherwise than written.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A path segment a browser resolves instead of sending (WHATWG URL: `.` and `..`, also spelled
# `%2e`, `.%2E`, ...): a link under `/ops/%2e%2e` opened `/approve/...`, not `/ops/...`.
_DOT_SEGMENT = re.compile(r"(?:\.|%2e){1,2}", re.IGNORECASE)


def base_url(url: str) -> str:
    """``url`` (``check_url`` passed) as a base links are built under and as the origin a
    browser names it by: ``scheme://host[:port][/path]`` with scheme and host in lowercase,
    the scheme's default port left out and no trailing ``/``
    (``HTTPS://Remediator.Example:443/`` is ``https://remediator.example``). A browser sends
    ``Origin`` in that form, and the same-origin checks of the login and approval pages compare
    it as text; ``Remediator.Example`` refused every decision a browser sent with its origin.

    ValueError, never quoting the URL, for what no link can be built under: a query (``?``:
    ``{url}/approve/{token}`` put the token in it, and the link opened the wrong page), a
    blank, a control character or a backslash, a ``%`` in the path that begins no
    percent-escape (quoted: ``'%zz'``), a ``.`` or ``..`` segment however spelled (a browser
    resolves it: quoted), a port that is not 1-65535, or a host a browser would
    name otherwise (``_origin_host``)."""
    if _NOT_IN_URL.search(url):
        raise ValueError(
            "the URL holds a blank, a control character or a backslash: percent-encode it"
        )
    parts = urlsplit(url)
    if "?" in url:
        raise ValueError(
            "the URL has a query (?...): links are built under it (/approve/..., /runs/...), "
            "and would land in the query; give the address alone"
        )
    if bad := _BAD_ESCAPE.search(parts.path):
        escape = parts.path[bad.start() : bad.start() + 3]
        raise ValueError(
            f"the URL's path holds {escape!r}, which is no percent-escape (% and two hex "
            "digits): write a % itself as %25"
        )
    if dots := [seg for seg in parts.path.split("/") if _DOT_SEGMENT.fullmatch(seg)]:
        raise ValueError(
            f"the URL's path holds the segment {dots[0]!r}, which a browser resolves (. or ..) "
            "instead of sending it, so links would open another path: write the path without it"
        )
    try:
        port = parts.port
    except ValueError:  # not digits, or past 65535
        port = 0
    if port == 0:
        raise ValueError("the URL's port is not a number from 1 to 65535")
    host = _origin_host(parts.hostname or "")
    if port == _DEFAULT_PORTS.get(parts.scheme):
        port = None
    return f"{parts.scheme}://{host_port(host, port or None)}{parts.path.rstrip('/')}"


# The last label of a host a browser reads as an IPv4 address (WHATWG URL "ends in a number"):
# all digits, or a 0x number.
_NUMBER_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


def _origin_host(host: str) -> str:
    """``host`` (lowercase, no brackets, as ``urlsplit`` gives it) as a browser writes it in
    ``Origin`` (the WHATWG URL standard's host serializer): an IPv6 address in its one short
    form (``0:0:0:0:0:0:0:1`` is ``::1``; an IPv4-mapped one in hex, ``::ffff:7f00:1``), an
    IPv4 address as four decimal numbers, without a trailing dot. ValueError for a host a
    browser would read as another one, or not open: outside ASCII (its ``xn--`` form is what
    to write), with a ``%`` (a percent-escape, which a browser decodes; an IPv6 zone, which it
    refuses), an IPv4 address in another spelling (``127.1``, ``010.0.0.1``: octal, 8.0.0.1)."""
    if not host.isascii():
        raise ValueError(
            "the URL's host is not ASCII: write it as browsers send it, in its xn-- form"
        )
    if "%" in host:
        raise ValueError(
            "the URL's host holds a % (a percent-escape, or an IPv6 zone browsers do not "
            "open): write the host as browsers send it"
        )
    if ":" in host:
        try:
            return _ipv6_text(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError("the URL's IPv6 address is not one") from None
    labels = host.removesuffix(".").split(".")
    if not _NUMBER_LABEL.fullmatch(labels[-1]):
        return host
    try:
        return str(ipaddress.IPv4Address(".".join(labels)))
    except ValueError:
        raise ValueError(
            "the URL's host ends in a number, so browsers read it as an IPv4 address: write "
            "that address as four decimal numbers without leading zeros (127.0.0.1)"
        ) from None


def _ipv6_text(address: ipaddress.IPv6Address) -> str:
    """``address`` as the WHATWG URL standard serializes it: its eight pieces in lowercase hex
    without leading zeros, the first longest run of two or more zero pieces written ``::``.
    Not ``str(address)``: Python 3.13 writes an IPv4-mapped address with a dotted quad
    (``::ffff:127.0.0.1``), which no browser sends."""
    pieces = [int.from_bytes(address.packed[i : i + 2]) for i in range(0, 16, 2)]
    start, length = -1, 1
    at = 0
    while at < len(pieces):
        end = at
        while end < len(pieces) and pieces[end] == 0:
            end += 1
        if end - at > length:
            start, length = at, end - at
        at = max(end, at + 1)
    text = [f"{p:x}" for p in pieces]
    if start < 0:
        return ":".join(text)
    return ":".join(text[:start]) + "::" + ":".join(text[start + length :])


# Query parameters that carry a credential by their name (token, access_token, api_key,
# X-Amz-Signature, sig, password, ...): a URL holding one is a secret.
_SECRET_WORD = re.compile(r"token|secret|pass|pwd|key|sig|auth|cred|session", re.IGNORECASE)
# Names that say nothing of a credential but carry one in the query only: Azure Functions'
# function key is ``code``; signed URLs use ``hmac``, ``jwt``, ``bearer``, ``otp``.
_SECRET_PARAM = re.compile(r"^(code|otp|ticket)$|hmac|jwt|bearer|signed", re.IGNORECASE)

# Hosts whose URL path is the credential itself (whoever has the URL can post to the channel):
# (what it is, host pattern, path pattern), matched on the lowercase host and the path.
_PATH_CREDENTIAL = (
    ("a Slack webhook", re.compile(r"hooks\.slack(-gov)?\.com"), re.compile(r"/")),
    (
        "a Discord webhook",
        re.compile(r"((ptb|canary)\.)?discord(app)?\.com"),
        re.compile(r"/api(/v\d+)?/webhooks/", re.IGNORECASE),
    ),
    ("a Microsoft Teams webhook", re.compile(r".+\.webhook\.office\.com"), re.compile(r"/")),
    (
        "a Microsoft Teams webhook",
        re.compile(r"outlook\.office(365)?\.com"),
        re.compile(r"/webhook(b2)?/", re.IGNORECASE),
    ),
    ("a Zapier webhook", re.compile(r"hooks\.zapier\.com"), re.compile(r"/")),
    ("an IFTTT webhook", re.compile(r"maker\.ifttt\.com"), re.compile(r"/")),
    ("a Telegram bot URL", re.compile(r"api\.telegram\.org"), re.compile(r"/bot", re.IGNORECASE)),
    (
        "a Feishu/Lark bot webhook",
        re.compile(r"open\.(feishu\.cn|larksuite\.com)"),
        re.compile(r"/open-apis/bot/", re.IGNORECASE),
    ),
    # Self-hosted, so any host: Mattermost's hook id (26 characters), Rocket.Chat's id/token.
    ("a Mattermost webhook", re.compile(r".+"), re.compile(r"/hooks/[a-z0-9]{26}/?$")),
    (
        "a Rocket.Chat webhook",
        re.compile(r".+"),
        re.compile(r"/hooks/[A-Za-z0-9]{17}/[A-Za-z0-9]{48}/?$"),
    ),
)


def _path_credential(host: str, path: str) -> str | None:
    """What kind of URL ``host`` and ``path`` make when the path is a credential, else None."""
    for what, hosts, paths in _PATH_CREDENTIAL:
        if hosts.fullmatch(host) and paths.match(path):
            return what
    return None


def clear_url(url: str, *, instead: str) -> str:
    """``url`` when it holds no credential: no ``user:password@``, no fragment (``#token=``
    of an OAuth implicit grant), no query parameter whose name says it carries one (``token``,
    ``api_key``, ``sig``, ``code``, ...), and not a chat webhook whose path is the credential
    (``hooks.slack.com``, Discord's ``/api/webhooks/``, Teams, Zapier, ...). A URL written in
    the configuration itself is logged and may be kept in records, so one holding a secret is
    refused: ValueError saying ``instead`` (what to do), never quoting the URL."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"the URL holds credentials (user:password@); {instead}")
    if parts.fragment or url.endswith("#"):
        raise ValueError(f"the URL has a fragment (#...), where tokens are passed; {instead}")
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_WORD.search(name) or _SECRET_PARAM.search(name):
            raise ValueError(f"the URL's query parameter {name!r} holds a secret; {instead}")
    what = _path_credential((parts.hostname or "").rstrip("."), parts.path)
    if what is not None:
        raise ValueError(f"the URL is {what}, whose path is its credential; {instead}")
    return url


def connect_host(host: str) -> str:
    """A listen address as a host to connect to: a wildcard becomes loopback. Bare, as
    ``host``: ``host_port`` brackets an IPv6 address where a URL needs it."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a listen address, mapped to loopback
        return "127.0.0.1"
    return host


def host_port(host: str, port: int | None = None) -> str:
    """``host:port`` (or ``host``) as a URL writes it, an IPv6 address in brackets:
    ``[::]:9095``, ``[::1]``, ``127.0.0.1:9095``. ``host`` is bare (no brackets)."""
    # Unbracketed, `http://:::9095` is no URL at all, and `::1:9095` reads as an address.
    if ":" in host:
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: how a record names an endpoint's URL. Never the
    userinfo, path, query or fragment, where a credential the checks above miss would sit."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number: say nothing of it
        port = None
    return f"{parts.scheme}://{host_port(parts.hostname or '?', port)}"


# A header value in an HTTP authentication scheme's form (RFC 9110 section 11: `Bearer x`,
# `Basic x`, `token x`, ...), whatever the header is called.
_CREDENTIAL_VALUE = re.compile(
    r"\s*(?:bearer|basic|digest|token|apikey|api-key|hmac|aws4-hmac-sha256|negotiate)\s+\S",
    re.IGNORECASE,
)


def clear_header(name: str, value: str = "") -> str:
    """``name`` when a header of that name, with ``value``, may be written in the
    configuration itself; a credential-bearing one is refused: by its name (``Authorization``,
    ``Cookie``, ``X-Api-Key``, ...) or by its value (``X-Custom: Bearer ...``, a custom header
    carrying a token). ValueError pointing to ``header_files``, never quoting the value."""
    if name.lower() == "cookie" or _SECRET_WORD.search(name):
        raise ValueError(
            f"header {name!r} carries a credential: give it in header_files (read from a file)"
        )
    if _CREDENTIAL_VALUE.match(value):
        raise ValueError(
            f"header {name!r} holds a credential (an authentication scheme and its value): "
            "give it in header_files (read from a file)"
        )
    return name
