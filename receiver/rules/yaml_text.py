"""Text YAML lets a file write that the store cannot hold: U+0000 (a ``"\\0"`` escape) and a
lone surrogate (a ``"\\ud800"`` escape not half of a pair). Pure.

Either, in a file ``receiver.rules.yaml_lines.parse_yaml`` reads (rule files, rule test files),
is refused at its line: PostgreSQL's text and jsonb keep no U+0000, so a run
whose step carried one could never be stored and its event failed until it went dead; no UTF-8
encodes a lone surrogate, so the text could be neither stored nor hashed (a rule test's alert
labelled with one failed its simulation with ``UnicodeEncodeError``, from its fingerprint).
"""

from __future__ import annotations

from receiver.text import has_lone_surrogate

__all__ = ["NUL_PROBLEM", "SURROGATE_PROBLEM", "unstorable"]

NUL_PROBLEM = "contains U+0000 (NUL), which cannot be stored; remove the \\0 escape"
SURROGATE_PROBLEM = (
    "contains a lone surrogate (a \\ud800 to \\udfff escape, not half of a pair), which UTF-8 "
    "cannot encode; write the character itself"
)


def unstorable(text: str) -> str | None:
    """Why ``text`` (a value or a key) cannot be stored: ``NUL_PROBLEM`` or
    ``SURROGATE_PROBLEM``; None when it can."""
    if "\x00" in text:
        return NUL_PROBLEM
    return SURROGATE_PROBLEM if has_lone_surrogate(text) else None
