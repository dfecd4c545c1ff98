"""Mapping keys YAML 1.1 reads as no text: ``on:``, ``yes:``, ``5:``. Pure.

No key a rule file or a rule test file takes is a boolean or a number, and PyYAML's ``True``
or ``17`` named such a key as nobody wrote it: ``keys must be strings, not True``. It is
named as written, and told to be quoted.
"""

from __future__ import annotations

import yaml

__all__ = ["key_problem"]


def key_problem(node: yaml.Node, key: object) -> str:
    """What to say of a key ``node`` that YAML read as ``key``, no text: a plain ``on`` or ``5``
    is named as written (``keys must be strings: write "on" in quotes: YAML reads it as a
    boolean``); any other (a tagged or quoted one, a mapping) as Python shows it."""
    if isinstance(node, yaml.ScalarNode) and node.style is None and key is not None:
        kind = "a boolean" if isinstance(key, bool) else "a number"
        return f'keys must be strings: write "{node.value}" in quotes: YAML reads it as {kind}'
    return f"keys must be strings, not {key!r}"
