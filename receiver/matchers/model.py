"""One label matcher, as Alertmanager's ``pkg/labels.Matcher`` (v0.35.0 matcher.go). Pure.

A ``Matcher`` is built by a parser (``receiver.matchers.classic``, ``receiver.matchers.utf8``) or
directly; a regex value is compiled once, at construction (``receiver.matchers.regex``), so
matching an alert costs one dict lookup and one comparison or RE2 search per matcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from receiver.matchers.regex import Regex, RegexError

__all__ = ["Matcher", "MatcherError", "Op", "go_quote", "matches_all"]

Op = Literal["=", "!=", "=~", "!~"]
OPS: tuple[Op, ...] = ("=", "!=", "=~", "!~")


class MatcherError(ValueError):
    """Matcher text or a matcher that Alertmanager would not accept. The message says why."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """``name op value``. Equality and hashing ignore the compiled regex (it follows from the
    value). Raises MatcherError for an unknown operator, a lone surrogate (no UTF-8 form) or a
    regex Go's ``regexp`` would refuse."""

    name: str
    op: Op
    value: str
    _regex: Regex | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise MatcherError(f"invalid operator {self.op!r} in matcher for {self.name!r}")
        for text in (self.name, self.value):
            if not _is_utf8(text):
                raise MatcherError(f"matcher text is not valid UTF-8: {text!r}")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_regex", Regex(self.value))
            except RegexError as exc:
                raise MatcherError(f"invalid regular expression in {self}: {exc}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label ``name`` of ``labels`` passes; a missing label reads as "" (as in
        Alertmanager's ``Matchers.Matches``): ``foo=""`` matches an alert without foo."""
        actual = labels.get(self.name, "")
        op = self.op
        if op == "=":
            return actual == self.value
        if op == "!=":
            return actual != self.value
        assert self._regex is not None  # compiled in __post_init__ for both regex operators
        found = self._regex.matches(actual)
        return found if op == "=~" else not found

    @property
    def escapes_anchors(self) -> bool:
        """A regex value whose ``)`` closes Alertmanager's ``^(?:...)$`` group (see regex.py)."""
        return self._regex is not None and self._regex.escapes_anchors

    def __str__(self) -> str:
        """Alertmanager's ``Matcher.String()``: the name quoted (Go ``strconv.Quote``) when it
        holds a character the UTF-8 parser reserves, else bare; the value in double quotes."""
        if any(_reserved(char) for char in self.name):
            return f"{go_quote(self.name)}{self.op}{go_quote(self.value)}"
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches ``labels`` (true for no matchers)."""
    return all(matcher.matches(labels) for matcher in matchers)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Go's unicode.IsSpace: the Latin-1 spaces and the White_Space property above Latin-1.
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_RESERVED = frozenset("{}!=~,\\\"'`")


def _reserved(char: str) -> bool:
    """matcher/parse lexer.go isReserved: cannot appear in an unquoted UTF-8 token."""
    return char in GO_SPACE or char in _RESERVED


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GO_ESCAPES["\v"] = "\\v"


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: printable characters as they are, the rest escaped.

    Go's ``unicode.IsPrint`` (L, M, N, P, S and ASCII space) and Python's ``isprintable`` agree
    but for the Unicode version of their tables (Go 15.0, Python 3.11 14.0).
    """
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
