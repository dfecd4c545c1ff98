"""Mapping keys YAML 1.1 reads as no text: ``on:``, ``yes:``, ``5:``. Pure.

No key a rule file, a rule test file, the settings file or the approvers file takes is a
boolean or a number, and PyYAML's ``True`` or ``17`` named such a key as nobody wrote it: a
rule file said ``keys must be strings, not True``, the approvers file
``by_rule.1.[key]: Input should be a valid string`` with no line, the settings file
``True: unknown setting`` on its first line. Each now names the key as written, at its line,
and says to quote it.
"""

from __future__ import annotations

import yaml

__all__ = ["KeyNotText", "check_text_keys", "key_problem"]

# The tags a plain key resolves to when YAML reads it as no text. A merge key (`<<`) and YAML
# 1.1's value key (`=`) have tags of their own, which flatten_mapping reads.
_NOT_TEXT_TAGS = frozenset(f"tag:yaml.org,2002:{kind}" for kind in ("bool", "int", "float"))


def key_problem(node: yaml.Node, key: object) -> str:
    """What to say of a key ``node`` that YAML read as ``key``, no text: a plain ``on`` or ``5``
    is named as written (``keys must be strings: write "on" in quotes: YAML reads it as a
    boolean``, and a plain ``~`` as null); a list or mapping key as such; any other (a tagged
    or quoted one) as Python shows it."""
    # A list or mapping key is constructed by no caller (``key`` is None): named by its node,
    # not as ``None``, which a `[a]: x` or `? {a: 1}` key was told it was.
    if isinstance(node, yaml.SequenceNode):
        return (
            "keys must be strings, not a list (a `[...]` or `? - ...` key): write the key as text"
        )
    if isinstance(node, yaml.MappingNode):
        return (
            "keys must be strings, not a mapping (a `{...}` or `? a: b` key): write the key as text"
        )
    if isinstance(node, yaml.ScalarNode) and node.style is None:
        if key is None and not node.value:
            return "a key is missing: a `:` or `?` with nothing before it"
        read_as = _read_as(key)
        return f'keys must be strings: write "{node.value}" in quotes: YAML reads it as {read_as}'
    return f"keys must be strings, not {key!r}"


def _read_as(key: object) -> str:
    """What YAML read a plain key as, in words."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "a boolean"
    return "a number" if isinstance(key, int | float) else type(key).__name__


class KeyNotText(yaml.MarkedYAMLError):
    """A key YAML 1.1 reads as a boolean or a number, marked at its line (``line``, 1-based).
    ``word`` is the key as written: a caller quotes it only when it may (in a settings file it
    could be a secret written where a key goes)."""

    def __init__(self, node: yaml.ScalarNode, key: object) -> None:
        self.line = node.start_mark.line + 1
        self.word = node.value
        super().__init__(problem=key_problem(node, key), problem_mark=node.start_mark)


def check_text_keys(loader: yaml.SafeLoader, root: yaml.Node) -> None:
    """Raise KeyNotText for the first key in ``root``'s tree, in the order written, that
    ``loader`` reads as a boolean or a number. Each node is visited once (an alias's node
    where it is defined)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag in _NOT_TEXT_TAGS:
                    key = loader.construct_object(key_node)
                    if isinstance(key, bool | int | float):
                        raise KeyNotText(key_node, key)
                children += [key_node, value_node]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        stack.extend(reversed(children))
