"""YAML with line numbers. Pure: parses text, reads no file.

PyYAML's constructed objects forget where they came from, so the node tree is walked by hand and
the line of every key and item is kept by its path, for errors that point at the offending line.

Aliases are expanded where they are used, so ~700 bytes of nested aliases (the "billion laughs")
would build billions of values: a document is refused, naming the line, when its tree with every
alias expanded holds more than ``MAX_NODES`` nodes. The same bound guards the YAML the service's
configuration reads (``safe_load``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from receiver.rules.errors import RuleError
from receiver.rules.yaml_keys import check_text_keys, key_problem
from receiver.rules.yaml_loaders import PlainLoader, make_loader, yaml_1_1_number
from receiver.rules.yaml_text import unstorable

__all__ = [
    "MAX_NODES",
    "DuplicateKey",
    "KeyPath",
    "Located",
    "TooManyNodes",
    "check_expansion",
    "check_unique_keys",
    "dotted",
    "duplicate_keys",
    "parse_yaml",
    "safe_load",
    "unquoted_template",
]

# Nodes a document may expand to, aliases expanded: far beyond any rule or settings file (the
# shipped rules hold a few hundred), far below what takes seconds or gigabytes to build.
MAX_NODES = 100_000

# Where a value sits in a rule file: keys and list indexes from the top of the document.
KeyPath = tuple[str | int, ...]
# How a message names a path: (what it is in, e.g. "rule 'x': ", and the path inside it),
# from the document as constructed and the path from its top.
Scope = Callable[[Any, KeyPath], tuple[str, KeyPath]]


def dotted(path: Sequence[str | int]) -> str:
    """``path`` as a rule author writes it: ``target.namespace``, ``steps[0].params``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _whole_document(document: Any, path: KeyPath) -> tuple[str, KeyPath]:
    return "", path


@dataclass(slots=True)
class Located:
    """Errors and warnings of one file, and a path -> line index (1-based) to place them.
    ``scope`` names a path in the messages ``parse_yaml`` writes (default: from the top of the
    document; a rule file's names the rule and the path inside it)."""

    file: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    errors: list[RuleError] = field(default_factory=list)
    # YAML 1.1's booleans written as another word than true or false (`name: on`), and plain
    # numbers (`value: 2`), by path, as written: where text was meant, the message says to
    # quote them (``yaml_loaders.boolean_word``).
    words: dict[KeyPath, str] = field(default_factory=dict)
    # Plain scalars YAML 1.1 read as a number that the rule loader reads as their text (`017`,
    # `.5`, `+5`, `1_000`), by path, as written: where a field takes any JSON (http.call's
    # body) the text would go out where the number did, so they are refused there
    # (``steps.check_params``).
    numerals: dict[KeyPath, str] = field(default_factory=dict)
    warnings: list[RuleError] = field(default_factory=list)
    scope: Scope = _whole_document

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


class TooManyNodes(yaml.MarkedYAMLError):
    """A document whose tree, aliases expanded, holds more than ``limit`` nodes; ``line``
    (1-based) is where the innermost such node starts (the anchor whose uses multiply)."""

    def __init__(self, node: yaml.Node, limit: int) -> None:
        self.line = node.start_mark.line + 1
        self.limit = limit
        super().__init__(
            problem=f"too many YAML nodes (alias expansion): more than {limit} once aliases "
            "are expanded",
            problem_mark=node.start_mark,
        )


class DuplicateKey(yaml.MarkedYAMLError):
    """A mapping that names one key twice (PyYAML keeps the last without a word: a settings
    file's second ``dry_run: false`` silently switched dry-run off); ``line`` (1-based) is the
    second one's."""

    def __init__(self, key: str, node: yaml.Node, first_line: int) -> None:
        self.line = node.start_mark.line + 1
        self.key, self.first_line = key, first_line
        super().__init__(
            problem=f"duplicate key {key!r} (first at line {first_line})",
            problem_mark=node.start_mark,
        )


def duplicate_keys(
    loader: yaml.SafeLoader, node: yaml.MappingNode
) -> Iterator[tuple[object, yaml.Node, int]]:
    """The keys ``node`` writes twice, before its merges are flattened: (key, the later key's
    node, the first one's line, 1-based), in the order written. Keys pulled in by a
    ``<<: *anchor`` merge may be overridden, as YAML means them to be; only two written keys of
    one name are a mistake. Keys that are not plain scalars are left to the caller."""
    first_line: dict[object, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        # A bare `=` key is YAML 1.1's value key, which flatten_mapping turns into the
        # string "=" (there is no constructor for its own tag).
        value_key = key_node.tag == "tag:yaml.org,2002:value"
        key = key_node.value if value_key else loader.construct_object(key_node)
        if not isinstance(key, str | int | float | bool):
            continue
        if key in first_line:
            yield key, key_node, first_line[key]
        else:
            first_line[key] = key_node.start_mark.line + 1


def check_unique_keys(loader: yaml.SafeLoader, root: yaml.Node) -> None:
    """Raise DuplicateKey for the first mapping in ``root``'s tree that writes a scalar key
    twice (``duplicate_keys``; ``parse_yaml`` reports the same ones, each, as rule errors)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue  # an alias: its node was checked where it was defined
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, key_node, first in duplicate_keys(loader, node):
                raise DuplicateKey(str(key), key_node, first)
        stack.extend(_children(node))


def check_expansion(root: yaml.Node, limit: int = MAX_NODES, *, cycles: bool = True) -> None:
    """Raise TooManyNodes when ``root``'s tree, every alias expanded, has more than ``limit``
    nodes. Linear in the composed graph (each node's expanded size is computed once); an alias
    of its own ancestor counts once (the caller reports the recursion), or, without
    ``cycles``, raises a MarkedYAMLError at that ancestor."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # Post-order without recursion: (node, children pushed?).
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not expanded:
            on_path.add(key)
            if not cycles and (loop := next((c for c in children if id(c) in on_path), None)):
                problem = "recursive YAML alias (a value that contains itself)"
                raise yaml.MarkedYAMLError(problem=problem, problem_mark=loop.start_mark)
            stack.append((node, True))
            stack.extend(
                (c, False) for c in children if id(c) not in sizes and id(c) not in on_path
            )
            continue
        on_path.discard(key)
        # A child still on the path is an alias of an ancestor: one node, not a loop.
        size = 1 + sum(sizes.get(id(c), 1) for c in children)
        if size > limit:
            raise TooManyNodes(node, limit)
        sizes[key] = size


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def safe_load(text: str, limit: int = MAX_NODES) -> Any:
    """``yaml.safe_load`` with the alias bound and keys unique: raises TooManyNodes instead of
    building an alias bomb, DuplicateKey instead of keeping the last of two keys, KeyNotText
    for a key YAML reads as a boolean or a number (``on:``, ``017:``), a
    MarkedYAMLError for a recursive alias (a value containing itself, which every reader of
    the settings walked until the stack ran out), ControlCharacter for a character YAML
    refuses: all MarkedYAMLErrors, so callers that report YAML errors report them too. Read
    with ``PlainLoader``: the configuration's whole numbers are in the digits 0-9, its other
    plain scalars text as written."""
    loader = make_loader(text, PlainLoader)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_expansion(node, limit, cycles=False)
        check_unique_keys(loader, node)
        check_text_keys(loader, node)
        return loader.construct_document(node)
    except RecursionError:
        # PyYAML composes recursively; marked where the reader stopped, so callers name the line.
        raise yaml.MarkedYAMLError(problem=_TOO_DEEP, problem_mark=loader.get_mark()) from None
    finally:
        loader.dispose()


# Said where the nesting got too deep (``safe_load``, ``parse_yaml``).
_TOO_DEEP = "nested too deeply (hundreds of levels within each other): flatten it"


def parse_yaml(text: str, located: Located) -> Any:
    """The document in ``text`` as plain data, or None when it is empty or invalid.

    Fills ``located.lines`` with the line of every key and item; YAML errors, non-string and
    duplicate keys, unquoted ``{{ ... }}`` templates (``unquoted_template``), recursive aliases,
    whole numbers too long to read (``yaml_loaders.RuleLoader``) and documents that expand to
    more than ``MAX_NODES`` nodes go to ``located.errors`` (nothing is raised).
    """
    # Made inside the handled part: a control character is refused when the loader is made,
    # and raised from a reload it had stopped the rules watcher for good.
    loader: yaml.SafeLoader | None = None
    try:
        loader = make_loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        check_expansion(node)
        before = len(located.errors)
        templates: dict[KeyPath, str] = {}
        data = _construct(loader, node, (), located, set(), {}, templates)
        for path, template in templates.items():
            # Said once the whole document is read: the rule's name may come after the value.
            where, inside = located.scope(data, path)
            field_name = f"`{dotted(inside)}`: " if inside else ""
            quoted = "'" + template.replace("'", "''") + "'"
            located.add(
                path,
                f"{where}{field_name}a `{{{{ ... }}}}` template must be quoted in YAML "
                f"({quoted}): unquoted, YAML reads the braces as a mapping",
            )
        # A mapping used again through an alias is walked again: each of its mistakes is
        # reported once, where it was written.
        located.errors[before:] = list(dict.fromkeys(located.errors[before:]))
        return data
    except TooManyNodes as exc:
        located.errors.append(RuleError(located.file, exc.line, str(exc.problem)))
        return None
    except RecursionError:
        # PyYAML composes recursively: thousands of nested brackets exhaust the stack. The
        # reader stopped where the nesting got too deep: that line, not the file's first.
        line = loader.get_mark().line + 1 if loader is not None else 1
        located.errors.append(RuleError(located.file, line, f"invalid YAML: {_TOO_DEEP}"))
        return None
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
        if loader is not None:
            loader.dispose()


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: KeyPath,
    located: Located,
    active: set[int],
    repeats: dict[int, dict[int, int]],
    templates: dict[KeyPath, str],
) -> Any:
    """``node`` as plain data; its problems to ``located``, its unquoted templates (by path,
    their text) to ``templates``."""
    located.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_object(node)
        if isinstance(value, bool) and node.value.lower() not in ("true", "false"):
            located.words[path] = node.value
        elif isinstance(value, int | float) and not isinstance(value, bool) and node.style is None:
            # A plain number where text may be meant (`value: 2`, `max: 2`): kept to say
            # "quote it" rather than pydantic's "Input should be a valid string".
            located.words[path] = node.value
        elif isinstance(value, str) and node.style is None and yaml_1_1_number(node.value):
            located.numerals[path] = node.value
        if isinstance(value, str) and (problem := unstorable(value)) is not None:
            # A "\0" escape: PostgreSQL keeps no U+0000 in text or jsonb, so a run whose step
            # carried it could never be stored, and the event would fail until it went dead.
            located.add(path, problem)
            return None
        return value
    template = unquoted_template(node)
    if template is not None:
        templates[path] = template
        return None
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
                items.append(
                    _construct(loader, item, (*path, index), located, active, repeats, templates)
                )
            return items
        if isinstance(node, yaml.MappingNode):
            # Read once per node, before flatten_mapping rewrites it: walked again through an
            # alias, the mapping is flattened already and its merged keys look written.
            if id(node) not in repeats:
                found = duplicate_keys(loader, node)
                repeats[id(node)] = {id(key_node): first for _, key_node, first in found}
            repeated = repeats[id(node)]
            loader.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                key = (
                    loader.construct_object(key_node)
                    if isinstance(key_node, yaml.ScalarNode)
                    else None
                )
                if isinstance(key, str) and (problem := unstorable(key)) is not None:
                    located.errors.append(RuleError(located.file, key_line, problem))
                    continue
                if not isinstance(key, str):
                    # YAML 1.1 reads `on:` or `yes:` as booleans; say so rather than guess.
                    located.errors.append(
                        RuleError(located.file, key_line, key_problem(key_node, key))
                    )
                    continue
                if id(key_node) in repeated:
                    located.errors.append(
                        RuleError(
                            located.file,
                            key_line,
                            f"duplicate key {key!r} (first at line {repeated[id(key_node)]})",
                        )
                    )
                    continue
                located.lines[(*path, key)] = key_line
                out[key] = _construct(
                    loader, value_node, (*path, key), located, active, repeats, templates
                )
            return out
        return loader.construct_object(node)
    finally:
        active.discard(id(node))


def unquoted_template(node: yaml.Node) -> str | None:
    """The text of ``node`` when it is a ``{{ ... }}`` template written without quotes, which
    YAML reads as a flow mapping whose one key is a flow mapping starting right after the
    first brace (``{{ labels.namespace }}`` is ``{{"labels.namespace": null}: null}``); else
    None. The rule author meant a string: ``'{{ labels.namespace }}'``."""
    if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
        return None
    key, value = node.value[0]
    inner = isinstance(key, yaml.MappingNode) and key.start_mark.index == node.start_mark.index + 1
    if not inner or not (isinstance(value, yaml.ScalarNode) and value.value == ""):
        return None
    start, end = node.start_mark, node.end_mark
    if start.buffer is None or end.buffer is None:  # read from a stream: no text kept
        return "{{ ... }}"
    return str(start.buffer[start.pointer : end.pointer])
