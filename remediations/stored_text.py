"""U+0000 as the store keeps it: PostgreSQL's jsonb refuses the character (22P05), yet a value an
action reads from a live system may hold it (an environment variable's value, an annotation),
so the store writes each as the text ``\\x00`` (receiver/store/canonical.py), and an action that
compares a live value with one that went through the store (an approved step's) writes the live
one so too. One function, so the two never disagree. Pure."""

from __future__ import annotations

from typing import Any

__all__ = ["without_nul"]


def without_nul(value: Any) -> Any:
    """``value`` with each U+0000 of its strings and string keys written as the text ``\\x00``;
    dicts, lists and tuples as containers of the same type, anything else as it is."""
    kind = type(value)
    if kind is str:
        return value.replace("\x00", "\\x00")
    if kind is dict:
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return kind(without_nul(v) for v in value)
    return value
