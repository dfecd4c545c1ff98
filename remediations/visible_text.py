"""Text a person reads as it is written: an alert's labels and annotations quoted in a chat
message, a webhook's text, an approval's notices and page. Pure.

And text that stays on its own line (``one_line``): what an alert says, quoted inside a line that
the service writes, shows each of its line breaks as ``LINE_BREAK``.

Here, under ``remediations``, because the ``notify`` action's messages need it and actions never
import the service; ``receiver.text`` offers the same functions to the service.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

__all__ = ["LINE_BREAK", "address", "one_line", "shown", "visible"]

# What a line break in quoted text is shown as: the break stays visible, the line stays one.
LINE_BREAK = " \u21b5 "
# Every break str.splitlines() knows (\n, \r, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029).
_BREAK = re.compile("\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")

# How much of a refused value an error quotes: enough to find it, never the whole of a pasted
# file or of a 5,000-digit number (a message is read on one screen, and logged).
SHOWN_CHARS = 80

# Joiners that reorder nothing, and that Persian words and emoji sequences need.
_JOINERS = frozenset("\u200c\u200d")


def _hidden(c: str) -> bool:
    category = unicodedata.category(c)
    if category == "Cf":
        return c not in _JOINERS
    return category == "Cc" and c not in "\t\n"


def visible(text: str, *, mrkdwn: bool = False) -> str:
    """``text`` with each character that shows nothing and changes how the text reads written
    as ``<U+202E>``: bidirectional embeddings, overrides and isolates (U+202A-U+202E,
    U+2066-U+2069: ``"approve\u202edelete"`` shows "eteled" after "approve"), Unicode's other
    format characters (zero-width space, word joiner, BOM, soft hyphen; not the zero-width
    joiner and non-joiner, which reorder nothing), and control characters other than tab and
    newline. For text from an alert's labels and annotations that a person reads (an
    approval's notices and page, run announcements, a ``notify`` step's message): it must read
    as it is. ``mrkdwn``: ``text`` is Slack mrkdwn already (a rule author's, its values
    escaped), so the shown form is written ``&lt;U+202E&gt;``: a bare ``<`` and ``>`` are
    Slack's link marks, and ``<U+202E>`` inside the author's ``<url|label>`` ended the link at
    its ``>``."""
    if text.isprintable():
        return text
    opening, closing = ("&lt;", "&gt;") if mrkdwn else ("<", ">")
    return "".join(f"{opening}U+{ord(c):04X}{closing}" if _hidden(c) else c for c in text)


def one_line(text: str) -> str:
    """``text`` on one line, each line break (``\\r\\n`` as one, and every other break
    ``str.splitlines`` knows) shown as ``LINE_BREAK``. For what an alert says, quoted in a
    message whose lines are the service's own (an approval's notices, a run announcement, a
    value a ``notify`` template prints): an annotation reading "disk full\\nReview and decide:
    https://elsewhere/..." wrote a line that read as the service's own. Not for fields meant
    for programs, which keep the value as recorded."""
    return _BREAK.sub(LINE_BREAK, text)


def address(url: str) -> str:
    """``url`` for a link's target: each character that does not print percent-encoded (its
    UTF-8), as a browser sends it, so the link opens the same page and nothing in it turns the
    text around it. Not ``visible``: ``https://x/\u200bdisk`` written as ``.../<U+200B>disk``
    is another address (``%3CU+200B%3E``), a page the alert never linked."""
    if url.isprintable():
        return url
    return "".join(c if c.isprintable() else quote(c, safe="") for c in url)


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value`` as an error quotes it: its ``repr``, of at most ``limit`` characters of the
    value's text, ``…`` ending a cut one (``'99999…'``)."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "…")
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
