"""Text the service cannot store, log or send on: a lone UTF-16 surrogate, which has no UTF-8
form. A ``str`` holds one from JSON's ``"\\ud800"`` escape, from a YAML ``"\\udcff"``, or from
a byte that is not UTF-8 in an environment variable or a command-line argument (Python decodes
those with ``surrogateescape``). Settings, operator bodies and the CLI's arguments refuse such
text with their own words. And text a person reads as it is written (``visible``): what an
alert says, in an approval's notices and page. Pure."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["has_lone_surrogate", "visible"]

# In a str a surrogate is always a lone one: a decoded pair is one character.
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a code point from U+D800 to U+DFFF."""
    return _SURROGATE.search(text) is not None


# Joiners that reorder nothing, and that Persian words and emoji sequences need.
_JOINERS = frozenset("\u200c\u200d")


def _hidden(c: str) -> bool:
    category = unicodedata.category(c)
    if category == "Cf":
        return c not in _JOINERS
    return category == "Cc" and c not in "\t\n"


def visible(text: str) -> str:
    """``text`` with each character that shows nothing and changes how the text reads written
    as ``<U+202E>``: bidirectional embeddings, overrides and isolates (U+202A-U+202E,
    U+2066-U+2069: ``"approve\u202edelete"`` shows "eteled" after "approve"), Unicode's other
    format characters (zero-width space, word joiner, BOM, soft hyphen; not the zero-width
    joiner and non-joiner, which reorder nothing), and control characters other than tab and
    newline. For text from an alert's labels and annotations that an approver reads (an
    approval's notices and page): it must read as it is."""
    if text.isprintable():
        return text
    return "".join(f"<U+{ord(c):04X}>" if _hidden(c) else c for c in text)
