"""The YAML loaders the service reads with: ``RuleLoader`` for rule files and rule test files,
and ``PlainLoader`` for its configuration (the settings and approvers files). Pure.

PyYAML reads YAML 1.1, whose plain scalars are more than their text: ``9_096`` and ``0x2380``
are integers, ``017`` is fifteen (octal), ``1:30`` is ninety, ``2024-01-01`` a date. Neither
loader reads them so: what either reads as a number is the number a reader of the file sees.

The configuration's loader reads a whole number only in the digits 0-9 (``port: 9_096`` is the
text ``9_096``, refused by the setting as ``REMEDIATOR_PORT=9_096`` is), no float (no setting
takes a fraction) and no date: those are the text written, and an error quotes them so
(``lease: 2024-01-01`` was told ``datetime.date(2024, 1, 1) is not a duration``). A value
tagged as no setting's kind (``!!binary``, ``!!set``, ``!!timestamp``, ``!!omap``,
``!!pairs``) is refused where it is written, naming the tag: a setting is text, a whole
number, true or false, a list or a map.

The rule loader reads a plain whole number only as written in decimal, without leading zeros
(``0``, ``17``, ``-3``), and a plain fraction only as ``-``, digits, a point and digits, with
YAML 1.1's signed exponent (``1.5``, ``0.25``, ``1.0e+3``); every other plain scalar YAML 1.1
read as a number or a date (``017``, ``+5``, ``9_096``, ``0x10``, ``0o17``, ``1:30``,
``.5``, ``.inf``, ``2024-01-01``) is the text as written. So a field that takes text gets
what was written (a label value ``017`` matches ``017``), a whole-number field reads that
text in decimal (``remediations.params.Integer``: ``017`` is 17, ``9_096`` refused), a
duration refuses ``1:30`` as ``'1:30'``, and a number keeps its value in a JSON body
(``http.call``'s ``ratio: 0.5``). Nothing that was text becomes a number. Booleans stay
YAML 1.1's, and a boolean word or a number where text is meant is told to be quoted
(``boolean_word``). A ``!!binary`` value is refused at its line, naming the tag.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from remediations.numerals import WHOLE_NUMBER, is_whole_number

__all__ = [
    "ControlCharacter",
    "NotASetting",
    "PlainLoader",
    "RuleLoader",
    "boolean_word",
    "make_loader",
    "yaml_1_1_number",
    "yaml_1_1_value",
]

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
# Explicit tags of values no setting takes (PyYAML built bytes, a set, a date, pairs).
_NOT_SETTINGS = ("binary", "set", "timestamp", "omap", "pairs")


class ControlCharacter(yaml.MarkedYAMLError):
    """A control character (other than tab and newlines) in the text, which PyYAML's reader
    refuses when a loader is made, before any other reading: its ReaderError gives a character
    offset, not a line, in a message of two lines. This one is marked at the line, so that
    every caller that reports a MarkedYAMLError says ``file:line`` (rule files, the settings
    and approvers files); ``line`` is 1-based."""

    def __init__(self, text: str, error: yaml.reader.ReaderError) -> None:
        offset = max(0, error.position)
        self.line = text.count("\n", 0, offset) + 1
        super().__init__(
            problem=f"control character U+{error.character:04X} is not allowed; write it as"
            " an escape in a double-quoted string if it is meant",
            problem_mark=yaml.Mark("<text>", offset, self.line - 1, 0, None, 0),
        )


class RuleLoader(yaml.SafeLoader):
    """SafeLoader whose plain numbers are read as a reader of the file reads them: a whole
    number in decimal without leading zeros (``17``, ``-3``, ``0``), a fraction as digits, a
    point and digits (``1.5``, ``-0.25``, ``1.0e+3``); any other number YAML 1.1 reads
    (``017``, ``9_096``, ``0x10``, ``1:30``, ``.5``, ``.inf``) and a date are text as written.
    ``!!int`` text that is no whole number in the digits 0-9 stays text; one is read in
    decimal (``!!int 017`` is 17). An integer too long for ``int()`` (more than 4,300 digits,
    Python's ``sys.get_int_max_str_digits``) raises a ConstructorError at its line, not the
    plain ValueError PyYAML lets through, which named no file or line."""


def _integer(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if not is_whole_number(text):
        return text  # an explicit `!!int 0x10`: text, for the field to take or refuse
    try:
        return int(text, 10)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            problem=f"a whole number of more than {sys.get_int_max_str_digits()} digits;"
            " quote it if it is text",
            problem_mark=node.start_mark,
        ) from None


# What a plain scalar must be to be a number in a rule file: as a reader reads it, a subset of
# YAML 1.1's (so nothing that was text becomes a number). No leading zero (YAML 1.1's octal), no
# `+`, `_`, base prefix or sexagesimal `1:30`; a fraction needs digits both sides of its point,
# and an exponent a sign, as YAML 1.1's does (`1.5e3` was and stays text).
_RULE_INT = re.compile(r"(?:0|-?[1-9][0-9]*)\Z")
_RULE_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+(?:[eE][-+][0-9]+)?\Z")

RuleLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RuleLoader.add_implicit_resolver(_INT, _RULE_INT, list("-0123456789"))
RuleLoader.add_implicit_resolver(_FLOAT, _RULE_FLOAT, list("-0123456789"))
RuleLoader.add_constructor(_INT, _integer)


def make_loader(text: str, kind: type[yaml.SafeLoader] = RuleLoader) -> yaml.SafeLoader:
    """A ``kind`` loader over ``text``; raises ControlCharacter for a character it refuses."""
    try:
        return kind(text)
    except yaml.reader.ReaderError as exc:
        raise ControlCharacter(text, exc) from None


def yaml_1_1_number(text: str) -> bool:
    """Whether PyYAML's SafeLoader (YAML 1.1) reads the plain scalar ``text`` as a number."""
    # The first implicit resolver that matches decides, as BaseResolver.resolve reads them.
    for tag, regexp in yaml.SafeLoader.yaml_implicit_resolvers.get(text[:1], ()):
        if regexp.match(text):
            return tag in (_INT, _FLOAT)
    return False


def yaml_1_1_value(text: str) -> Any:
    """The number YAML 1.1 (PyYAML's SafeLoader) reads the plain scalar ``text`` as (``017``:
    15, ``1:30``: 90), for a message; ``text`` itself when it reads none, or one ``int()``
    will not make (over 4,300 digits)."""
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):
        return text
    return value if isinstance(value, int | float) and not isinstance(value, bool) else text


class PlainLoader(yaml.SafeLoader):
    """SafeLoader whose plain numbers are whole numbers in the digits 0-9; any other
    number YAML 1.1 reads (``9_096``, ``0x10``, octal ``017``, ``1:30``, ``1.5``), and a date,
    is text as written. Booleans stay YAML 1.1's: ``off`` turns a setting off on purpose.
    ``!!binary``, ``!!set``, ``!!timestamp``, ``!!omap`` and ``!!pairs`` raise a
    ConstructorError at their line."""


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    # Also an explicit `!!int 0x10`: text that is no whole number in the digits 0-9 stays
    # text, for the setting to refuse; so does one int() will not read (over 4,300 digits).
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if not is_whole_number(text):
        return text
    try:
        return int(text, 10)  # decimal: YAML 1.1 would read 017 as octal
    except ValueError:
        return text


PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PlainLoader.add_implicit_resolver(_INT, WHOLE_NUMBER, list("-0123456789"))
PlainLoader.add_constructor(_INT, _decimal)


class NotASetting(yaml.constructor.ConstructorError):
    """A value ``PlainLoader`` refuses for its tag (``!!binary``, ``!!set``, ...): YAML, but
    of no kind a setting takes. Marked at its line; the value is not quoted (it may be a
    secret: ``password: !!binary ...``)."""

    def __init__(self, node: yaml.Node) -> None:
        tag = "!!" + node.tag.rpartition(":")[2]
        super().__init__(
            problem=f"a {tag} value: a setting is text, a whole number, true or false, a list"
            " or a map: remove the tag",
            problem_mark=node.start_mark,
        )


def _no_setting(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise NotASetting(node)


for _kind in _NOT_SETTINGS:
    PlainLoader.add_constructor(f"tag:yaml.org,2002:{_kind}", _no_setting)


# A `!!binary` value was bytes that pydantic took as text, so `message: !!binary YQBi` carried a
# NUL past the check that refuses one (``yaml_text``), and bytes in `http.call`'s body failed the
# whole load as "please report this". (A `!!set`, `!!omap` or `!!pairs` collection never gets
# here: ``yaml_lines`` builds mappings and lists itself, as plain ones. An explicit `!!timestamp`
# is a rule test's time; in a step's params it is refused by ``check_params``.)
_NOT_RULE_VALUES = ("binary",)


def _no_rule_value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    tag = "!!" + node.tag.rpartition(":")[2]
    raise yaml.constructor.ConstructorError(
        problem=f"a {tag} value: a rule file holds text, numbers, true or false, lists and"
        " maps: remove the tag",
        problem_mark=node.start_mark,
    )


for _kind in _NOT_RULE_VALUES:
    RuleLoader.add_constructor(f"tag:yaml.org,2002:{_kind}", _no_rule_value)


# Pydantic's error types for a value that should have been text: a string, one of some words.
_TEXT_EXPECTED = frozenset({"string_type", "literal_error", "enum"})


def boolean_word(
    words: Mapping[tuple[str | int, ...], str], path: Sequence[str | int], error: Mapping[str, Any]
) -> str | None:
    """What to tell of pydantic's ``error`` at ``path`` of a YAML document when YAML 1.1 read a
    word there as a boolean (``words``: the words, other than true and false, by path, as
    ``yaml_lines.Located.words`` keeps them). Where text was expected: ``write "on" in quotes:
    YAML reads on as true``, where pydantic said ``Input should be a valid string``; where a
    whole number was: ``on is YAML's true, a boolean, not a number: write the number``, where
    ``remediations.params`` said ``true is a boolean, ...``. A plain number where text was
    expected (``words`` keeps those too): ``write "2" in quotes: YAML reads 2 as a number``.
    None otherwise."""
    word = words.get(tuple(path))
    value = error.get("input")
    if word is None or not isinstance(value, bool | int | float):
        return None
    if not isinstance(value, bool):
        # A plain number where text was meant (`max: 2`; a plain `017` is text already).
        if error.get("type") == "string_type":
            return f'write "{word}" in quotes: YAML reads {word} as a number'
        return None
    read_as = "true" if value else "false"
    if error.get("type") in _TEXT_EXPECTED:
        return f'write "{word}" in quotes: YAML reads {word} as {read_as}'
    # A whole number's check (``remediations.params``) says "true is a boolean, not a number":
    # the word written is named, or `port: on` is told of a `true` it does not hold.
    said = str(error.get("msg", "")).removeprefix("Value error, ")
    if error.get("type") == "value_error" and said.startswith(f"{read_as} is a boolean"):
        return f"{word} is YAML's {read_as}, a boolean" + said.removeprefix(
            f"{read_as} is a boolean"
        )
    return None
