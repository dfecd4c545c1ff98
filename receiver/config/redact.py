"""What an error may say of a URL that holds credentials: never its password, even one that
the URL parsers split in the wrong place. Pure.

A password with a `/`, `#` or `?` that is not percent-encoded ends the URL's authority early
for ``urllib`` and for asyncpg and redis-py alike: ``urlsplit`` then finds no password, or part
of one, and the client's error quotes the rest as a port, a path or a query field
(``invalid literal for int() with base 10: 'Sec'``). So the password is read here as a person
reads it, from ``://`` to the last ``@``, and a parser's message is shown only when the URL was
split where its author meant it to be.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit

__all__ = ["HIDDEN", "SHORT_SECRET", "misread", "redacted", "unreadable"]


def _written_password(url: str) -> str:
    """The password as written: after the first ``:`` of what lies between ``://`` and the
    last ``@``; "" when the URL has none."""
    start = url.find("://")
    end = url.rfind("@")
    if start < 0 or end <= start:
        return ""
    return url[start + 3 : end].partition(":")[2]


def _split(url: str) -> SplitResult | None:
    """``urlsplit(url)``; None when urllib cannot read it at all ("Invalid IPv6 URL")."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


# A password shorter than this is replaced only where it stands alone (``redacted``).
SHORT_SECRET = 8
HIDDEN = "(the message is not shown: its words hold the password's characters)"


def redacted(text: str, url: str) -> str:
    """``text`` with the password of ``url`` replaced by ``***``: as written, as ``urlsplit``
    reads it, and percent-decoded.

    A password shorter than ``SHORT_SECRET`` characters turns up inside ordinary words, and a
    ``***`` put there told where, so what it replaced: with the password ``p``, "invalid
    sslmode parameter" read "invalid sslmode ***arameter". Such a one is replaced only where
    no letter, digit or ``_`` touches it (where a URL or a quote holds it); when it is found
    inside a word too, nothing of ``text`` is shown (``HIDDEN``)."""
    parts = _split(url)
    secrets = {_written_password(url), (parts.password if parts else None) or ""}
    secrets |= {unquote(s) for s in secrets}
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if len(secret) >= SHORT_SECRET:
            text = text.replace(secret, "***")
            continue
        text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", "***", text)
        if secret in text:
            return HIDDEN
    return text


def misread(kind: str, url: str) -> str | None:
    """Why ``url`` cannot be read as its author wrote it, in general terms; None when it reads
    as written. A ``/``, ``#`` or ``?`` in its password ends the authority early, and some
    clients take an ``@`` in it for the end of the password, so a client would read part of
    the password as a port or a host, and quote it in its error: checked before a client sees
    the URL."""
    written = _written_password(url)
    parts = _split(url)
    if parts is None:
        return None  # unreadable to urllib too ("Invalid IPv6 URL"): the reason quotes nothing
    # An `@` in it reads whole here (urllib splits at the last one) but not in every client.
    # The last `@` is taken for the password's end even in the query: `?x=a@b` after a plain
    # password is refused too, since it reads the same as a password with a `/` or `?` in it;
    # the message says to encode that `@` as well (libpq and asyncpg decode query values).
    if written and ((parts.password or "") != written or "@" in written):
        return (
            f"not a {kind} URL: it cannot be read as written (its password is not where the "
            "URL's separators put it): percent-encode a `/`, `#`, `?`, `@` or `%` in the user "
            "name or password (`%2F`, `%23`, `%3F`, `%40`, `%25`) and an `@` after the host "
            "(`?application_name=ops%40prod`), and give the port as a number"
        )
    if "," not in parts.netloc:  # one host (a DSN may list several: host1:5432,host2:5432)
        try:
            _ = parts.port
        except ValueError as exc:  # the port as written: no part of a password, checked above
            return f"not a {kind} URL: {exc}"
    return None


def unreadable(kind: str, url: str, exc: Exception) -> str:
    """Why ``url`` is not a ``kind`` URL (``exc``, the client's error), never any part of its
    password: what ``misread`` says, else the client's message, redacted."""
    return misread(kind, url) or f"not a {kind} URL: {redacted(str(exc), url)}"
