"""Reading the start of an HTTP answer's body, bounded in size, and never failing the call.

Only the start of an answer is kept (an excerpt for the record), so only the start is read:
``READ_LIMIT`` bytes at most, after which the connection is closed rather than drained. An
endpoint that answered a gigabyte held that much in memory (twice: bytes, then text) before
the excerpt was cut; one that streamed without end held the call for its whole timeout.

A body that breaks off (the try's timeout strikes while it trickles in, the connection drops)
is the body so far: the status line has been read, and what it says stands. A 2xx whose body
stalled was taken for a failed try and the POST sent again (a second Slack message, a second
call to an endpoint that does not deduplicate), and the step ended failed although the
endpoint had answered that it acted.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import aiohttp

__all__ = ["READ_LIMIT", "Start", "read_start"]

# Bytes of a body read at most: the excerpt kept is 500 characters (at most 2,000 bytes of
# UTF-8); the rest of this lets the redaction see a secret whole past the excerpt's edge.
READ_LIMIT = 65536


@dataclass(frozen=True, slots=True)
class Start:
    """The start of a body, decoded (undecodable bytes replaced). ``truncated``: more was left
    unread past the limit. ``broke``: why the body ended early, ``"timed out"`` or the name of
    the error that broke it; ``""`` when it did not."""

    text: str
    truncated: bool = False
    broke: str = ""


def _charset(response: aiohttp.ClientResponse) -> str:
    """The answer's declared charset when Python knows it, else UTF-8 (what JSON is)."""
    declared = response.charset
    if declared:
        try:
            return codecs.lookup(declared).name
        except LookupError:
            pass
    return "utf-8"


def _decoded(data: bytes, charset: str) -> str:
    """``data`` as text in ``charset``, undecodable bytes replaced; in UTF-8 when ``charset``
    cannot decode it so. A server names the charset, and Python knows codecs that are no text
    encoding (``base64``, ``rot13``, ``zlib``: LookupError on ``bytes.decode``) or that take
    no ``replace`` (``idna``, ``punycode``, ``undefined``: UnicodeError): an answer declaring
    one raised out of the call, a 2xx (the endpoint acted, the channel took the message)
    recorded as a crashed step or an undelivered notice."""
    try:
        return data.decode(charset, errors="replace")
    except (LookupError, ValueError):  # UnicodeError is a ValueError
        return data.decode("utf-8", errors="replace")


async def read_start(response: aiohttp.ClientResponse, limit: int = READ_LIMIT) -> Start:
    """At most ``limit`` bytes of ``response``'s body, decoded. Never raises for the body
    itself: a timeout or a broken connection while reading gives what came before it. When
    more is left unread the response is closed (its connection is not reused)."""
    chunks: list[bytes] = []
    size = 0
    truncated = False
    broke = ""
    try:
        while size < limit:
            chunk = await response.content.read(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        truncated = not response.content.at_eof()
    except TimeoutError:  # the try's own timeout (asyncio.TimeoutError is TimeoutError)
        broke = "timed out"
    except aiohttp.ClientError as exc:
        broke = type(exc).__name__
    if truncated or broke:
        response.close()
    text = _decoded(b"".join(chunks), _charset(response))
    return Start(text, truncated, broke)
