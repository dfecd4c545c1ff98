"""Alertmanager's classic matcher parser, ``pkg/labels/parse.go`` of v0.35.0. Pure: no I/O.

``parse_classic`` is ``ParseMatchers``: an optional ``{`` and ``}`` trimmed, the text split on
commas outside double quotes, a trailing comma (and whitespace) dropped, each piece read by
``parse_one`` (``ParseMatcher``): a classic label name (``[a-zA-Z_:][a-zA-Z0-9_:]*``), an
operator, and a value, quoted or not, with OpenMetrics escapes (``\\"``, ``\\\\``, ``\\n``) and
tolerance for the rest (a spurious ``\\x`` is kept literally, so is a final backslash).
Error messages are Alertmanager's, so they can be looked up.
"""

from __future__ import annotations

import re

from receiver.matchers.model import GO_SPACE, OPS, Matcher, MatcherError, Op

__all__ = ["empty_piece", "parse_classic", "parse_one"]

# parse.go's `re`, with Go's \s spelled out: Go's \s is [\t\n\f\r ] (no \v), Python's is wider.
# `=~` before `=` so that `~` is not read as the start of the value; the lazy value leaves the
# trailing whitespace to the last group, as Go's leftmost-first matching does.
_MATCHER = re.compile(
    r"[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)[\t\n\f\r ]*(.*?)[\t\n\f\r ]*",
    re.DOTALL,
)
_OP: dict[str, Op] = {op: op for op in OPS}


def parse_classic(text: str) -> tuple[Matcher, ...]:
    """``labels.ParseMatchers``: every matcher in ``text`` (none for ``""`` or ``{}``).

    Raises MatcherError with Alertmanager's message for the first piece that does not parse.
    """
    text = text.removeprefix("{").removesuffix("}")
    pieces: list[str] = []
    token: list[str] = []
    inside_quotes = escaped = False
    for char in text:
        # The same state machine as Go, quirks included: a comma inside quotes leaves
        # `escaped` as it was.
        if char == ",":
            if not inside_quotes:
                pieces.append("".join(token))
                token = []
                continue
        elif char == '"':
            if not escaped:
                inside_quotes = not inside_quotes
            else:
                escaped = False
        elif char == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(char)
    last = "".join(token).strip("".join(GO_SPACE))  # strings.TrimSpace
    if last:
        pieces.append(last)
    return tuple(parse_one(piece) for piece in pieces)


def empty_piece(text: str) -> tuple[int | None, int] | None:
    """Where ``parse_classic`` finds its first blank piece in ``text`` (``a=b,,c=d``), which it
    refuses as ``bad matcher format:`` and nothing else: (the 1-based column of the comma
    before the piece, None when it is the first; the column of the comma after it). None when
    no piece is blank. Commas inside double quotes split nothing, as in ``parse_classic``."""
    start = 1 if text.startswith("{") else 0
    body = text[start:].removesuffix("}")
    before: int | None = None
    piece_blank = True
    inside_quotes = escaped = False
    for index, char in enumerate(body):
        if char == ",":  # inside quotes, `escaped` stays as it was (parse_classic)
            if not inside_quotes:
                column = start + index + 1
                if piece_blank:
                    return before, column
                before, piece_blank = column, True
                continue
        elif char == '"':
            inside_quotes = inside_quotes if escaped else not inside_quotes
            escaped = False
        elif char == "\\":
            escaped = not escaped
        else:
            escaped = False
        # A piece is blank when it holds Go's spaces alone (``parse_one`` refuses it then).
        piece_blank = piece_blank and char in GO_SPACE
    return None


def parse_one(text: str) -> Matcher:
    """``labels.ParseMatcher``: exactly one matcher, commas included in an unquoted value."""
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise MatcherError(f"bad matcher format: {text}")
    name, op, raw = found[1], found[2], found[3]
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    value: list[str] = []
    escaped = False
    last = len(raw) - 1
    for index, char in enumerate(raw):
        if escaped:
            escaped = False
            if char == "n":
                value.append("\n")
            elif char in '"\\':
                value.append(char)
            else:
                value.append("\\" + char)  # a spurious escape: the backslash is literal
            continue
        if char == "\\":
            if index < last:
                escaped = True
            else:
                value.append("\\")  # a final backslash is literal
        elif char == '"':
            if not quoted or index < last:
                raise MatcherError(f"matcher value contains unescaped double quote: {found[3]}")
            quoted = False
        else:
            value.append(char)
    if quoted:
        raise MatcherError(f"matcher value contains unescaped double quote: {found[3]}")
    return Matcher(name, _OP[op], "".join(value))
