"""Alertmanager matcher syntax (``name="value"``, ``=``, ``!=``, ``=~``, ``!~``). Pure: no I/O.

Parsing and matching follow Alertmanager's classic ``pkg/labels`` parser so that a rule means
what the same text means in an Alertmanager route: a missing label reads as the empty string and
regexes are anchored at both ends. Regexes are RE2 syntax in Alertmanager; Python's ``re`` accepts
more, so the Python-only constructs are refused here and Go-only spellings that have a Python
equivalent are translated (see ``_translate``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Matcher",
    "MatcherError",
    "Op",
    "matches_all",
    "parse_matcher",
    "parse_matchers",
]

Op = Literal["=", "!=", "=~", "!~"]
_OPS: tuple[Op, ...] = ("=", "!=", "=~", "!~")


class MatcherError(ValueError):
    """A matcher that Alertmanager would not accept, or that could mean something else here."""


# Go's \s is [\t\n\f\r ]; Python's is Unicode-wide, hence the explicit class.
_WS = r"[ \t\n\f\r]*"
# '=~' before '=' so that '~' is not read as the first character of the value.
_MATCHER = re.compile(
    rf"{_WS}(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*){_WS}(?P<op>=~|=|!=|!~){_WS}(?P<value>.*?){_WS}",
    re.DOTALL,
)
_LABEL_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if _LABEL_NAME.fullmatch(self.name) is None:
            raise MatcherError(f"invalid label name {self.name!r}")
        if self.op not in _OPS:
            raise MatcherError(f"invalid operator {self.op!r} in matcher for {self.name!r}")
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "_regex", _compile(self.value, str(self)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        # Alertmanager hands a missing label to the matcher as "": `foo=""` matches an alert
        # without foo and `foo!=""` demands it.
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None  # set in __post_init__ for both regex operators
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{_quote(self.value)}"'


def _quote(value: str) -> str:
    """The inverse of the unescaping in parse_matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher, quoted (``name="v"``) or unquoted (``name=v``), like Alertmanager."""
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise MatcherError(f"bad matcher format: {text!r}")
    raw = found["value"]
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    value: list[str] = []
    escaped = False
    closed = False
    last = len(raw) - 1
    for index, char in enumerate(raw):
        if escaped:
            escaped = False
            if char == "n":
                value.append("\n")
            elif char in '"\\':
                value.append(char)
            else:
                # Alertmanager keeps a spurious escape as a literal backslash.
                value.append("\\" + char)
            continue
        if char == "\\":
            if index < last:
                escaped = True
            else:
                value.append("\\")
        elif char == '"':
            if not quoted or index < last:
                raise MatcherError(f"matcher value contains an unescaped double quote: {text!r}")
            closed = True
        else:
            value.append(char)
    if quoted and not closed:
        raise MatcherError(f"matcher value is missing its closing double quote: {text!r}")
    name = found["name"]
    op = found["op"]
    assert op in _OPS  # guaranteed by the regex alternation
    return Matcher(name, op, "".join(value))


def parse_matchers(texts: Sequence[str]) -> tuple[Matcher, ...]:
    if isinstance(texts, str):
        # A bare string is a Sequence[str] too; iterating it would parse characters.
        raise MatcherError(f"expected a list of matchers, got the string {texts!r}")
    return tuple(parse_matcher(text) for text in texts)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(matcher.matches(labels) for matcher in matchers)


# --- regular expressions: RE2 meaning on Python's engine -------------------------------------

# Escapes with the same meaning in RE2 and Python (re.ASCII makes \d \w \s \b ASCII, as in Go).
_ESCAPES_OUTSIDE = frozenset("dDsSwWbBAaftnrvx")
_ESCAPES_IN_CLASS = frozenset("dDsSwWaftnrvx")
_MAX_REPEAT = 1000  # RE2 refuses larger counts
_REPEAT = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")
_GO_FLAGS = frozenset("ims-")
_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_UNSUPPORTED_GROUPS = (
    ("(?=", "look-ahead"),
    ("(?!", "negative look-ahead"),
    ("(?<=", "look-behind"),
    ("(?<!", "negative look-behind"),
    ("(?P=", "backreference"),
    ("(?(", "conditional group"),
    ("(?>", "atomic group"),
    ("(?#", "comment group"),
)


def _compile(pattern: str, matcher: str) -> re.Pattern[str]:
    try:
        translated = _translate(pattern)
        return re.compile(f"(?:{translated})", re.ASCII)
    except (_RegexError, re.error) as exc:
        raise MatcherError(f"invalid regular expression in {matcher}: {exc}") from None


class _RegexError(Exception):
    pass


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[str, int]:
    """Translate the escape at pattern[i] (a backslash); return the text and the next index."""
    if i + 1 >= len(pattern):
        raise _RegexError("trailing backslash")
    char = pattern[i + 1]
    if char in "123456789":
        raise _RegexError(f"backreference \\{char} is not supported by RE2")
    if char == "z" and not in_class:
        return "\\Z", i + 2  # Go's end of text is Python's \Z
    if char == "x" and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 3)
        digits = pattern[i + 3 : end] if end != -1 else ""
        if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise _RegexError(f"invalid escape {pattern[i : end + 1 if end != -1 else None]!r}")
        code = int(digits, 16)
        if code > 0x10FFFF:
            raise _RegexError(f"invalid escape {pattern[i : end + 1]!r}")
        return f"\\U{code:08x}", end + 1
    if char.isascii() and char.isalpha():
        allowed = _ESCAPES_IN_CLASS if in_class else _ESCAPES_OUTSIDE
        if char not in allowed:
            where = " inside a character class" if in_class else ""
            raise _RegexError(f"escape \\{char}{where} means something else or nothing in RE2")
    elif not char.isascii():
        # RE2 accepts escaped punctuation only; Python would take any escaped character.
        raise _RegexError(f"invalid escape \\{char}")
    return pattern[i : i + 2], i + 2


def _char_class(pattern: str, start: int) -> tuple[str, int]:
    """Translate the class opening at pattern[start]; return the text and the next index."""
    out = ["["]
    i = start + 1
    if pattern.startswith("^", i):
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        char = pattern[i]
        if char == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        first = False
        if char == "\\":
            text, i = _escape(pattern, i, in_class=True)
            out.append(text)
            continue
        if pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            if end != -1:
                name = pattern[i + 2 : end]
                if name.startswith("^"):
                    raise _RegexError(f"negated POSIX class [:{name}:] is not supported here")
                if name not in _POSIX_CLASSES:
                    raise _RegexError(f"invalid character class range [:{name}:]")
                out.append(_POSIX_CLASSES[name])
                i = end + 2
                continue
        if char in "[&~|":
            # Literal in RE2; Python may some day read them as set operations.
            out.append("\\" + char)
        elif char == "]":
            out.append("\\]")  # a leading ']' is a literal in both dialects
        else:
            out.append(char)
        i += 1
    raise _RegexError("missing closing ]")


def _translate(pattern: str) -> str:
    """Rewrite an RE2 pattern into a Python pattern with the same meaning, or raise.

    RE2 lets ``(?i)`` appear anywhere and applies it to the rest of the enclosing group; Python
    3.11 only accepts global flags at the very start, and the caller wraps the pattern in a
    group. Such flags become scoped groups ``(?i:...)`` closed at the next ``|`` (and reopened
    after it) and at the end of the enclosing group.
    """
    out: list[str] = []
    # Flag groups opened at each nesting depth, innermost last.
    open_flags: list[list[str]] = [[]]
    after_quantifier = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        quantifier = False
        if char == "\\":
            text, i = _escape(pattern, i, in_class=False)
            out.append(text)
        elif char == "[":
            text, i = _char_class(pattern, i)
            out.append(text)
        elif char == "(":
            text, i, scoped = _group(pattern, i)
            if scoped:
                out.append(text)
                open_flags[-1].append(text)
            else:
                out.append(text)
                open_flags.append([])
        elif char == ")":
            if len(open_flags) == 1:
                raise _RegexError("unexpected )")
            out.append(")" * len(open_flags.pop()) + ")")
            i += 1
        elif char == "|":
            flags = open_flags[-1]
            out.append(")" * len(flags) + "|" + "".join(flags))
            i += 1
        elif char in "*+?":
            if after_quantifier and char == "+":
                raise _RegexError("possessive quantifiers are not supported by RE2")
            if after_quantifier and char in "*+":
                raise _RegexError(f"invalid nested repetition operator at {pattern[: i + 1]!r}")
            # `x*?` is lazy in both dialects; the `?` ends the quantifier.
            quantifier = not after_quantifier
            out.append(char)
            i += 1
        elif char == "{":
            repeat = _REPEAT.match(pattern, i)
            if repeat is None:
                # RE2 reads `{` that does not start `{n}`, `{n,}` or `{n,m}` literally; Python
                # would read `{,3}` as a repetition.
                out.append("\\{")
                i += 1
            else:
                if after_quantifier:
                    raise _RegexError(f"invalid nested repetition operator at {repeat[0]!r}")
                low = int(repeat[1])
                high = int(repeat[3]) if repeat[3] else low if not repeat[2] else None
                if low > _MAX_REPEAT or (high is not None and high > _MAX_REPEAT):
                    raise _RegexError(f"invalid repeat count {repeat[0]!r} (RE2 allows <= 1000)")
                if high is not None and high < low:
                    raise _RegexError(f"invalid repeat count {repeat[0]!r}")
                out.append(repeat[0])
                i = repeat.end()
                quantifier = True
        elif char == "}":
            out.append("\\}")
            i += 1
        else:
            out.append(char)
            i += 1
        after_quantifier = quantifier
    if len(open_flags) > 1:
        raise _RegexError("missing closing )")
    out.append(")" * len(open_flags[0]))
    return "".join(out)


def _group(pattern: str, i: int) -> tuple[str, int, bool]:
    """Translate the group opening at pattern[i]; return text, next index, and whether it is a
    flag setting for the rest of the enclosing group (``(?i)``) rather than a new group."""
    if not pattern.startswith("(?", i):
        return "(", i + 1, False
    for prefix, what in _UNSUPPORTED_GROUPS:
        if pattern.startswith(prefix, i):
            raise _RegexError(f"{what} {prefix!r} is not supported by RE2 (Alertmanager)")
    if pattern.startswith("(?P<", i):
        return "(?P<", i + 4, False
    if pattern.startswith("(?<", i):
        return "(?P<", i + 3, False  # Go 1.22 spelling of a named group
    j = i + 2
    while j < len(pattern) and pattern[j] not in ":)":
        j += 1
    if j >= len(pattern):
        raise _RegexError("missing closing )")
    flags = pattern[i + 2 : j]
    if not flags and pattern[j] == ")":
        raise _RegexError("empty flag group '(?)'")
    bad = sorted(set(flags) - _GO_FLAGS)
    if bad:
        raise _RegexError(f"flag(s) {''.join(bad)!r} in {pattern[i : j + 1]!r} not supported")
    if flags.count("-") > 1 or flags.endswith("-"):
        raise _RegexError(f"invalid flag group {pattern[i : j + 1]!r}")
    if pattern[j] == ":":
        return f"(?{flags}:", j + 1, False
    if not flags.replace("-", ""):
        raise _RegexError(f"invalid flag group {pattern[i : j + 1]!r}")
    return f"(?{flags}:", j + 1, True
