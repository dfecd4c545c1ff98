"""The lexer of Alertmanager's UTF-8 matcher parser: ``matcher/parse/lexer.go`` and
``token.go`` of v0.35.0, with Go's ``strconv.Unquote`` for quoted tokens. Pure: no I/O.

Positions are counted in characters, which is what Go's columns count (runes); Go's byte offsets
only slice the input for messages, which character offsets do the same way here. Errors carry
Go's messages (``"3:4: \\\\: invalid input"``) so they read like Alertmanager's log lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from receiver.matchers.model import GO_SPACE

__all__ = ["LexError", "Lexer", "Token", "TokenKind", "go_unquote", "is_reserved"]


class TokenKind(Enum):
    """token.go tokenKind; ``str()`` is Go's ``String()``."""

    EOF = "EOF"
    OPEN_BRACE = "OpenBrace"
    CLOSE_BRACE = "CloseBrace"
    COMMA = "Comma"
    EQUALS = "Equals"
    NOT_EQUALS = "NotEquals"
    MATCHES = "Matches"
    NOT_MATCHES = "NotMatches"
    QUOTED = "Quoted"
    UNQUOTED = "Unquoted"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text as written, and its columns [start, end)."""

    kind: TokenKind
    value: str
    start: int
    end: int

    def unquote(self) -> str:
        """The text a quoted token stands for (Go ``strconv.Unquote``); others as written.
        Raises ValueError when the quoted text is not a Go string literal or not UTF-8."""
        return go_unquote(self.value) if self.kind is TokenKind.QUOTED else self.value


class LexError(Exception):
    """Input that is not a token: Go's expectedError, invalidInputError, unterminatedError."""


_RESERVED = frozenset("{}!=~,\\\"'`") | GO_SPACE


def is_reserved(char: str) -> bool:
    """lexer.go isReserved: white space or one of ``{}!=~,\\"'``` ` ```."""
    return char in _RESERVED


class Lexer:
    """lexer.go ``lexer``: ``scan`` returns the next token or raises LexError, and keeps
    raising it after the first error (Go stores it in ``l.err``); ``peek`` does not consume."""

    def __init__(self, text: str) -> None:
        self.input = text
        self._err: LexError | None = None
        self._start = 0  # where the current token starts
        self._pos = 0  # the cursor
        self._width = 0  # width of the last character read: 1, or 0 at the end

    @property
    def column(self) -> int:
        """Go ``position().columnEnd``: the column after the last character consumed."""
        return self._pos

    def scan(self) -> Token:
        if self._err is not None:
            raise self._err
        try:
            return self._scan()
        except LexError as exc:
            self._err = exc
            raise

    def peek(self) -> Token:
        saved = (self._start, self._pos, self._width)
        try:
            return self.scan()
        finally:
            self._start, self._pos, self._width = saved

    def _scan(self) -> Token:
        while (char := self._next()) is not None:
            if char == "{":
                return self._emit(TokenKind.OPEN_BRACE)
            if char == "}":
                return self._emit(TokenKind.CLOSE_BRACE)
            if char == ",":
                return self._emit(TokenKind.COMMA)
            if char in "=!":
                self._rewind()
                return self._scan_operator()
            if char == '"':
                self._rewind()
                return self._scan_quoted()
            if not is_reserved(char):
                self._rewind()
                return self._scan_unquoted()
            if char in GO_SPACE:
                self._start = self._pos  # skip
                continue
            raise LexError(f"{self._start}:{self._pos}: {self._text()}: invalid input")
        return Token(TokenKind.EOF, "", 0, 0)

    def _scan_operator(self) -> Token:
        if self._accept("!"):
            if self._accept("="):
                return self._emit(TokenKind.NOT_EQUALS)
            if self._accept("~"):
                return self._emit(TokenKind.NOT_MATCHES)
            raise self._expected("=~")
        if self._accept("="):
            if self._accept("~"):
                return self._emit(TokenKind.MATCHES)
            return self._emit(TokenKind.EQUALS)
        raise self._expected("!=")

    def _scan_quoted(self) -> Token:
        if not self._accept('"'):
            raise self._expected('"')
        escaped = False
        while (char := self._next()) is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                self._rewind()
                break
        if not self._accept('"'):
            raise LexError(f'{self._start}:{self._pos}: {self._text()}: missing end "')
        return self._emit(TokenKind.QUOTED)

    def _scan_unquoted(self) -> Token:
        while (char := self._next()) is not None:
            if is_reserved(char):
                self._rewind()
                break
        return self._emit(TokenKind.UNQUOTED)

    def _expected(self, expected: str) -> LexError:
        where = f"{self._start}:{self._pos}"
        if self._pos >= len(self.input):
            return LexError(f"{where}: unexpected end of input, expected one of '{expected}'")
        return LexError(f"{where}: {self._text()}: expected one of '{expected}'")

    def _text(self) -> str:
        return self.input[self._start : self._pos]

    def _accept(self, valid: str) -> bool:
        char = self._next()
        if char is not None and char in valid:
            return True
        self._rewind()
        return False

    def _next(self) -> str | None:
        if self._pos >= len(self.input):
            self._width = 0
            return None
        self._width = 1
        self._pos += 1
        return self.input[self._pos - 1]

    def _rewind(self) -> None:
        self._pos -= self._width

    def _emit(self, kind: TokenKind) -> Token:
        token = Token(kind, self._text(), self._start, self._pos)
        self._start = self._pos
        return token


_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_HEX = frozenset("0123456789abcdefABCDEF")


def go_unquote(text: str) -> str:
    """Go's ``strconv.Unquote`` for a double-quoted literal, then the UTF-8 check of token.go.

    Escapes: ``\\a \\b \\f \\n \\r \\t \\v \\\\ \\"``, ``\\xHH`` and ``\\OOO`` (bytes, which must
    add up to UTF-8), ``\\uHHHH`` and ``\\UHHHHHHHH`` (valid code points). A raw newline is
    refused, raw tabs and other characters are not. Raises ValueError naming the problem.
    """
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError("not a double-quoted string")
    body = text[1:-1]
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        char = body[i]
        if char == "\n" or char == '"':
            raise ValueError(f"raw {char!r} inside a quoted string")
        if char != "\\":
            out += char.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("backslash at the end of a quoted string")
        escape = body[i + 1]
        i += 2
        if escape in _SIMPLE:
            out.append(_SIMPLE[escape])
        elif escape in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[escape]
            digits = body[i : i + width]
            if len(digits) < width or not set(digits) <= _HEX:
                raise ValueError(f"bad \\{escape} escape")
            i += width
            code = int(digits, 16)
            if escape == "x":
                out.append(code)  # a byte, possibly half of a UTF-8 sequence
            elif code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(f"\\{escape}{digits} is not a valid code point")
            else:
                out += chr(code).encode("utf-8")
        elif escape in "01234567":
            digits = escape + body[i : i + 2]
            if len(digits) < 3 or not set(digits) <= set("01234567") or int(digits, 8) > 255:
                raise ValueError(f"bad octal escape \\{digits}")
            i += 2
            out.append(int(digits, 8))
        else:
            raise ValueError(f"unknown escape \\{escape}")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("quoted string contains invalid UTF-8 code points") from None
