"""Whether text is a whole number written in the digits 0-9. Pure; in ``remediations`` so that
every part of the service may import it (actions never import the service; the service's every
layer may import ``remediations``).

``int()`` also takes other scripts' digits (a full-width 5, U+FF15), ``_`` between digits
(``9_096``), surrounding blanks and a ``+``; YAML 1.1 reads ``017`` as octal, ``0x10`` as hex
and ``1:30`` as ninety. No setting, argument, query or rule field means any of them, so each
reader checks its text here before ``int(text, 10)``.
"""

from __future__ import annotations

import re

__all__ = ["WHOLE_NUMBER", "is_whole_number"]

# ASCII digits, `-` first for a negative one; `\Z`, not `$` (which also matches before a final
# newline), so that `.match` reads the whole text, as PyYAML's implicit resolvers call it.
WHOLE_NUMBER = re.compile(r"-?[0-9]+\Z")


def is_whole_number(text: str) -> bool:
    """True when all of ``text`` is ASCII digits 0-9, with ``-`` first for a negative number
    (leading zeros allowed: ``int(text, 10)`` reads ``017`` as 17). No blanks, ``+``, ``_``,
    fraction, exponent or base prefix. Its value may still be too long for ``int()`` (over
    4,300 digits): callers bound the length they take."""
    return WHOLE_NUMBER.match(text) is not None
