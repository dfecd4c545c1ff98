"""Regex matcher values as Alertmanager compiles them, run on RE2 (google-re2). Pure: no I/O.

Alertmanager v0.35.0 (``pkg/labels/matcher.go`` ``NewMatcher``) compiles the value of ``=~`` and
``!~`` with Go's ``regexp`` as ``regexp.Compile("^(?:" + value + ")$")`` and asks
``MatchString``. This module does the same string concatenation and an unanchored search, so a
value that closes the group (``a)|(b``) means here what it means there: ``^(?:a)|(b)$``, which
matches any value starting with ``a``. ``escapes_anchors`` tells the linter about such values.

Go's ``regexp/syntax`` is a port of RE2, and google-re2 is RE2 itself: the syntax and the match
semantics (leftmost-first, ``(?i)`` with Unicode simple case folding, ASCII ``\\d \\s \\w \\b``,
``\\Q...\\E``, ``(?U)``, ``\\p{Greek}``, the 1000 limit on counted repetitions) are the same, except
where ``_to_re2`` steps in (each checked by the differential tests against Go):

- ``\\C`` (any byte): RE2 accepts it, Go refuses it. Refused here.
- Group names: Go allows ASCII letters, digits and ``_``; RE2 also Unicode letters. Refused.
- ``\\p{...}`` names: Go 1.25+ ignores case, ``_``, ``-`` and spaces (``\\p{greek}``), and knows
  ``Any``, ``Assigned``, ``ASCII``, ``LC``, ``Cn`` and long aliases (``\\p{Letter}``); RE2 knows
  exact short names only. Names Go knows are rewritten to RE2; names Go does not know are refused
  even when RE2 knows them. Go's ``\\p{C}`` includes unassigned code points, RE2's does not; the
  rewrite keeps Go's meaning. A rewrite that would need a negated set inside ``[...]``
  (``[\\P{LC}]``, ``[\\p{C}]``) has no RE2 spelling and is refused with a hint.

Known differences left alone: RE2's Unicode tables are 15.1, Go 1.26's are 15.0.0, so the 627
code points assigned in 15.1 (CJK Extension I, U+2FFC-2FFF) are in ``\\p{L}``, ``\\p{Han}``,
``\\p{Lo}``, ``\\p{So}`` here and unassigned in Go; and the size limits differ (Go counts
instructions, RE2 budgets ``_MAX_MEM`` bytes): a pattern near them may be accepted by one only.
"""

from __future__ import annotations

import re2

from receiver.matchers.go_unicode import ALIASES, CATEGORIES, SCRIPTS

__all__ = ["Regex", "RegexError"]

# RE2's default (8 MiB) refuses some patterns Go accepts (e.g. `\pL{500}`); rules are few.
_MAX_MEM = 64 << 20
# Verdicts remembered per regex: label values repeat (severity, namespace), and a search through
# google-re2's Python layer costs microseconds. Short values only, a bounded number of them.
_MEMO_ENTRIES = 1024
_MEMO_VALUE_CHARS = 256

# RE2 error codes (re2/re2.cc CodeText) -> Go's (regexp/syntax ErrorCode), for messages that
# read like Alertmanager's.
_GO_CODES = {
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class": "invalid character class",
    "invalid character class range": "invalid character class range",
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "unexpected )": "unexpected )",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid UTF-8": "invalid UTF-8",
    "invalid named capture group": "invalid named capture",
}

# A Go \p name -> (RE2 class items, sign). Items are valid inside [...]; sign -1 means the
# set is the complement of the items.
_ALL_CLASSES = "\\p{L}\\p{M}\\p{N}\\p{P}\\p{S}\\p{Z}"
_SPECIAL: dict[str, tuple[str, int]] = {
    "Any": ("\\x{0}-\\x{10FFFF}", +1),
    "Ascii": ("\\x{0}-\\x{7F}", +1),
    "Lc": ("\\p{Lu}\\p{Ll}\\p{Lt}", +1),
    # Go's C is Cc|Cf|Co|Cs|Cn (unassigned too); RE2's C has no Cn: so C = not L|M|N|P|S|Z.
    "C": (_ALL_CLASSES, -1),
    "Cn": (_ALL_CLASSES + "\\p{C}", -1),
    "Assigned": (_ALL_CLASSES + "\\p{C}", +1),
}


class RegexError(ValueError):
    """A regex Alertmanager's Go would refuse (or that RE2 cannot express as Go means it)."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.max_mem = _MAX_MEM
    return options


_OPTIONS = _options()


class Regex:
    """``pattern`` compiled once, as Alertmanager compiles a regex matcher value.

    Raises RegexError with Go's wording where RE2's and Go's errors correspond.
    """

    __slots__ = ("_memo", "_search", "escapes_anchors", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._search = _compile("^(?:" + pattern + ")$").search
        self._memo: dict[str, bool] = {}
        self.escapes_anchors = _escapes_anchors(pattern)

    def matches(self, value: str) -> bool:
        """Go's ``MatchString`` on the anchored pattern."""
        known = self._memo.get(value)
        if known is not None:
            return known
        try:
            found = self._search(value) is not None
        except UnicodeEncodeError:
            # A lone surrogate cannot be UTF-8; Go's JSON decoding turns it into U+FFFD.
            found = self._search(_replace_surrogates(value)) is not None
        if len(value) <= _MEMO_VALUE_CHARS:
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()  # dict operations are atomic: safe from any thread
            self._memo[value] = found
        return found

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


def _replace_surrogates(value: str) -> str:
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)


def _compile(wrapped: str) -> re2._Regexp:
    try:
        rewritten = _to_re2(wrapped)
    except RegexError as exc:
        raise RegexError(f"error parsing regexp: {exc}") from None
    try:
        return re2.compile(rewritten, _OPTIONS)
    except re2.error as exc:
        raise RegexError(f"error parsing regexp: {_go_message(exc)}") from None
    except UnicodeEncodeError:
        raise RegexError("error parsing regexp: invalid UTF-8 (a lone surrogate)") from None


def _go_message(exc: re2.error) -> str:
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    code, sep, arg = text.partition(": ")
    if code.startswith("pattern too large"):
        return "expression too large"
    if not sep:
        return _GO_CODES.get(text, text)
    return f"{_GO_CODES.get(code, code)}: `{arg}`"


def _escapes_anchors(pattern: str) -> bool:
    """True when the value alone is no regex but the anchored one is: its ``)`` closes
    Alertmanager's ``^(?:`` group, so part of it is no longer anchored at both ends."""
    try:
        re2.compile(_to_re2(pattern), _OPTIONS)
    except (RegexError, re2.error, UnicodeEncodeError):
        return True
    return False


def _to_re2(pattern: str) -> str:
    """The pattern in RE2's syntax with Go's meaning; raises RegexError for Go-refused syntax.

    A scan that tracks only what changes the meaning of the escapes it rewrites: ``\\Q...\\E``
    (literal text outside classes), ``[...]`` (where ``]`` first is literal and ``[:name:]`` is
    one item) and escape pairs. Anything else is left for RE2 to accept or refuse like Go.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = first = False
    while i < n:
        char = pattern[i]
        if char == "\\" and i + 1 < n:
            escape = pattern[i + 1]
            first = False
            if escape == "Q" and not in_class:
                end = pattern.find("\\E", i + 2)
                stop = n if end < 0 else end + 2
                out.append(pattern[i:stop])
                i = stop
            elif escape == "C":
                raise RegexError("invalid escape sequence: `\\C` (RE2 has it, Go does not)")
            elif escape in "pP":
                text, i = _unicode_class(pattern, i, in_class)
                out.append(text)
            else:
                out.append(pattern[i : i + 2])
                i += 2
            continue
        if in_class:
            if char == "]" and not first:
                in_class = False
            elif pattern.startswith("[:", i) and (end := pattern.find(":]", i + 2)) >= 0:
                out.append(pattern[i : end + 2])
                i = end + 2
                first = False
                continue
            first = False
        elif char == "[":
            in_class = first = True
            if pattern.startswith("^", i + 1):
                out.append("[^")
                i += 2
                continue
        elif char == "(":
            _check_group_name(pattern, i)
        out.append(char)
        i += 1
    return "".join(out)


def _check_group_name(pattern: str, i: int) -> None:
    # regexp/syntax parsePerlFlags: `(?P<name>` and `(?<name>`; isValidCaptureName is ASCII.
    if pattern.startswith("(?P<", i):
        begin = i + 4
    elif pattern.startswith("(?<", i):
        begin = i + 3
    else:
        return
    end = pattern.find(">", begin)
    if end >= 0 and not pattern[begin:end].isascii():
        raise RegexError(
            f"invalid named capture: `{pattern[i : end + 1]}` "
            "(Go allows ASCII letters, digits and _ in group names)"
        )


def _canonical(name: str) -> str:
    """Go's regexp/syntax canonicalName: first letter upper, the rest lower, no ``_- ``."""
    out: list[str] = []
    for char in name:
        if char in "_- ":
            continue
        if not out:
            out.append(char.upper() if "a" <= char <= "z" else char)
        else:
            out.append(char.lower() if "A" <= char <= "Z" else char)
    return "".join(out)


_CANONICAL_ALIASES = {_canonical(alias): key for alias, key in ALIASES.items()}


def _lookup(name: str) -> tuple[str, int] | None:
    """Go's regexp/syntax unicodeTable: the RE2 items and sign for a \\p name, or None."""
    name = _canonical(name)
    if name in _SPECIAL:
        return _SPECIAL[name]
    key = name if name in CATEGORIES or name in SCRIPTS else _CANONICAL_ALIASES.get(name)
    if key is None:
        return None
    if key in ("LC", "C", "Cn"):
        return _SPECIAL["Lc" if key == "LC" else key]
    return f"\\p{{{key}}}", +1


def _unicode_class(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    """Rewrite the ``\\p``/``\\P`` escape at ``pattern[i]``; return RE2 text and the next index."""
    sign = -1 if pattern[i + 1] == "P" else +1
    if i + 2 >= len(pattern):
        raise RegexError(f"invalid character class range: `{pattern[i:]}`")
    if pattern[i + 2] != "{":
        seq, name, stop = pattern[i : i + 3], pattern[i + 2], i + 3
    else:
        end = pattern.find("}", i)
        if end < 0:
            raise RegexError(f"invalid character class range: `{pattern[i:]}`")
        seq, name, stop = pattern[i : end + 1], pattern[i + 3 : end], end + 1
    if name.startswith("^"):  # \p{^Greek} is \P{Greek}
        sign, name = -sign, name[1:]
    found = _lookup(name)
    if found is None:
        raise RegexError(f"invalid character class range: `{seq}`")
    items, table_sign = found
    sign *= table_sign
    if items.startswith("\\p{") and items.count("\\") == 1:
        return (items if sign > 0 else "\\P" + items[2:]), stop
    if not in_class:
        return ("[" if sign > 0 else "[^") + items + "]", stop
    if sign > 0:
        return items, stop
    raise RegexError(
        f"`{seq}` inside [...] is a negated set that RE2 cannot express within brackets; "
        f"write it outside them, e.g. (?:[...]|{seq})"
    )
