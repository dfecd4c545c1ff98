"""YAML with line numbers. Pure: parses text, reads no file.

PyYAML's constructed objects forget where they came from, so the node tree is walked by hand and
the line of every key and item is kept by its path, for errors that point at the offending line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from receiver.rules.errors import RuleError

__all__ = ["KeyPath", "Located", "parse_yaml"]

# Where a value sits in a rule file: keys and list indexes from the top of the document.
KeyPath = tuple[str | int, ...]


@dataclass(slots=True)
class Located:
    """Errors and warnings of one file, and a path -> line index (1-based) to place them."""

    file: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    errors: list[RuleError] = field(default_factory=list)
    warnings: list[RuleError] = field(default_factory=list)

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of ``path``, or of its deepest ancestor that has one; 1 when none has."""
        # The deepest recorded ancestor: a missing key is reported on its parent's line.
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1

    def add(self, path: Sequence[str | int], message: str) -> None:
        """Record an error at the line of ``path``."""
        self.errors.append(RuleError(self.file, self.line_of(path), message))

    def warn(self, path: Sequence[str | int], message: str) -> None:
        """Record a warning at the line of ``path``."""
        self.warnings.append(RuleError(self.file, self.line_of(path), message, warning=True))


def parse_yaml(text: str, located: Located) -> Any:
    """The document in ``text`` as plain data, or None when it is empty or invalid.

    Fills ``located.lines`` with the line of every key and item; YAML errors, non-string and
    duplicate keys and recursive aliases go to ``located.errors`` (nothing is raised).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        return _construct(loader, node, (), located, set())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = ": ".join(p for p in (exc.context, exc.problem) if p)
        located.errors.append(RuleError(located.file, line, f"invalid YAML: {problem}"))
        return None
    except yaml.YAMLError as exc:
        located.errors.append(RuleError(located.file, 1, f"invalid YAML: {exc}"))
        return None
    finally:
        loader.dispose()


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: KeyPath,
    located: Located,
    active: set[int],
) -> Any:
    located.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_object(node)
    if id(node) in active:
        # An alias pointing at its own ancestor would make the walk (and the rule) infinite.
        located.add(path, "recursive YAML alias")
        return None
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                located.lines.setdefault((*path, index), item.start_mark.line + 1)
                items.append(_construct(loader, item, (*path, index), located, active))
            return items
        if isinstance(node, yaml.MappingNode):
            # Keys written here, as opposed to keys pulled in by a `<<: *anchor` merge, which
            # they may override; only two written keys of the same name are a mistake.
            written = {id(key) for key, _ in node.value}
            loader.flatten_mapping(node)
            out: dict[str, Any] = {}
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                key = (
                    loader.construct_object(key_node)
                    if isinstance(key_node, yaml.ScalarNode)
                    else None
                )
                if not isinstance(key, str):
                    # YAML 1.1 reads `on:` or `yes:` as booleans; say so rather than guess.
                    located.errors.append(
                        RuleError(located.file, key_line, f"keys must be strings, not {key!r}")
                    )
                    continue
                if key in first_line and id(key_node) in written:
                    located.errors.append(
                        RuleError(
                            located.file,
                            key_line,
                            f"duplicate key {key!r} (first at line {first_line[key]})",
                        )
                    )
                    continue
                if id(key_node) in written:
                    first_line[key] = key_line
                located.lines[(*path, key)] = key_line
                out[key] = _construct(loader, value_node, (*path, key), located, active)
            return out
        return loader.construct_object(node)
    finally:
        active.discard(id(node))
