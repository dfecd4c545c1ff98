"""Text the service cannot store, log or send on: a lone UTF-16 surrogate, which has no UTF-8
form. A ``str`` holds one from JSON's ``"\\ud800"`` escape, from a YAML ``"\\udcff"``, or from
a byte that is not UTF-8 in an environment variable or a command-line argument (Python decodes
those with ``surrogateescape``). Settings, operator bodies and the CLI's arguments refuse such
text with their own words. And text a person reads as it is written (``visible``, whose home is
``remediations.visible_text``, as the ``notify`` action needs it too): what an alert says, in
an approval's notices and page and in run announcements; a link's target keeps its address
(``address``: what does not print is percent-encoded); what an alert says, quoted in a line of
the service's own, stays on it (``one_line``: each break shown as ``LINE_BREAK``); a refused
value quoted in an error, cut to what finds it (``shown``). A request header's value as text
that can be recorded (``header_text``). Pure."""

from __future__ import annotations

import re

from remediations.visible_text import LINE_BREAK, address, one_line, shown, visible

__all__ = [
    "LINE_BREAK",
    "address",
    "has_lone_surrogate",
    "header_text",
    "one_line",
    "shown",
    "visible",
]

# In a str a surrogate is always a lone one: a decoded pair is one character.
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a code point from U+D800 to U+DFFF."""
    return _SURROGATE.search(text) is not None


def header_text(value: str) -> str:
    """A request header's ``value`` with each byte that is not UTF-8 replaced with U+FFFD, as
    intake stores such text. aiohttp decodes a header's bytes with ``surrogateescape``, so such
    a byte arrives as a lone surrogate, which PostgreSQL cannot take: for a header that is only
    recorded (an approver's User-Agent, an X-Forwarded-For hop)."""
    return _SURROGATE.sub("\ufffd", value)
