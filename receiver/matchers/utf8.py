"""Alertmanager's UTF-8 matcher parser, ``matcher/parse/parse.go`` of v0.35.0. Pure: no I/O.

``parse_utf8`` is ``parse.Matchers``: an optional ``{...}``, matchers separated by commas, one
trailing comma allowed. A label name or value is either a double-quoted Go string literal
(``"k8s.deployment.name"``, escapes as in Go) or an unquoted run of characters that are neither
white space nor one of ``{}!=~,\\"'``` ` ``` (so ``service.name=checkout`` and ``a=~.+`` are
fine, ``a=~\\d+`` is not). The parser is Go's finite-state machine, state for state, and its
errors are Go's messages.
"""

from __future__ import annotations

from collections.abc import Callable

from receiver.matchers.model import Matcher, MatcherError, Op
from receiver.matchers.utf8_lexer import Lexer, LexError, Token, TokenKind

__all__ = ["parse_utf8"]

_OPS: dict[TokenKind, Op] = {
    TokenKind.EQUALS: "=",
    TokenKind.NOT_EQUALS: "!=",
    TokenKind.MATCHES: "=~",
    TokenKind.NOT_MATCHES: "!~",
}
_NAME_KINDS = (TokenKind.QUOTED, TokenKind.UNQUOTED)


class _EndOfInput(Exception):
    """parse.go errEOF: the input ended where a token was expected."""

    def __str__(self) -> str:
        return "end of input"


def parse_utf8(text: str) -> tuple[Matcher, ...]:
    """``parse.Matchers``: every matcher in ``text`` (none for ``""`` or ``{}``).

    Raises MatcherError with Alertmanager's message, e.g. ``0:3: unexpected }: expected label
    name``.
    """
    return _Parser(text).parse()


_State = Callable[[], "_State | None"]


class _Parser:
    def __init__(self, text: str) -> None:
        self._lexer = Lexer(text)
        self._matchers: list[Matcher] = []
        self._open_brace = False

    def parse(self) -> tuple[Matcher, ...]:
        state: _State | None = self._parse_open_brace
        try:
            while state is not None:
                state = state()
        except (LexError, _EndOfInput) as exc:
            raise MatcherError(str(exc)) from None
        return tuple(self._matchers)

    # -- states ----------------------------------------------------------------------------

    def _parse_open_brace(self) -> _State | None:
        try:
            self._open_brace = self._accept(TokenKind.OPEN_BRACE)
        except _EndOfInput:
            return self._parse_eof
        try:
            close = self._accept_peek(TokenKind.CLOSE_BRACE)
        except _EndOfInput:
            return self._parse_close_brace
        return self._parse_close_brace if close else self._parse_matcher

    def _parse_close_brace(self) -> _State | None:
        if self._open_brace:
            try:
                self._expect(TokenKind.CLOSE_BRACE)
            except (LexError, _EndOfInput, MatcherError) as exc:
                raise MatcherError(f"0:{self._lexer.column}: {exc}: expected close brace") from None
        else:
            try:
                self._expect(TokenKind.CLOSE_BRACE)
            except (LexError, _EndOfInput, MatcherError):
                pass
            else:
                raise MatcherError(f"0:{self._lexer.column}: }}: expected opening brace")
        return self._parse_eof

    def _parse_matcher(self) -> _State | None:
        token = self._expect_or(_NAME_KINDS, "expected label name")
        name = self._unquote(token)
        token = self._expect_or(tuple(_OPS), "expected an operator such as '=', '!=', '=~' or '!~'")
        op = _OPS[token.kind]
        token = self._expect_or((TokenKind.UNQUOTED, TokenKind.QUOTED), "expected label value")
        value = self._unquote(token)
        try:
            self._matchers.append(Matcher(name, op, value))
        except MatcherError as exc:
            raise MatcherError(f"failed to create matcher: {exc}") from None
        return self._parse_end_of_matcher

    def _parse_end_of_matcher(self) -> _State | None:
        try:
            token = self._expect_peek(TokenKind.COMMA, TokenKind.CLOSE_BRACE)
        except _EndOfInput:
            return self._parse_close_brace
        except (LexError, MatcherError) as exc:
            raise MatcherError(f"{exc}: expected a comma or close brace") from None
        if token.kind is TokenKind.COMMA:
            return self._parse_comma
        return self._parse_close_brace

    def _parse_comma(self) -> _State | None:
        self._expect_or((TokenKind.COMMA,), "expected a comma")
        try:
            token = self._expect_peek(TokenKind.CLOSE_BRACE, TokenKind.UNQUOTED, TokenKind.QUOTED)
        except _EndOfInput:
            return self._parse_close_brace
        except (LexError, MatcherError) as exc:
            raise MatcherError(f"{exc}: expected a matcher or close brace after comma") from None
        if token.kind is TokenKind.CLOSE_BRACE:
            return self._parse_close_brace
        return self._parse_matcher

    def _parse_eof(self) -> _State | None:
        try:
            token = self._lexer.scan()
        except LexError as exc:
            raise MatcherError(f"{exc}: expected end of input") from None
        if token.kind is not TokenKind.EOF:
            raise MatcherError(f"{token.start}:{token.end}: {token.value}: expected end of input")
        return None

    # -- helpers: parse.go accept, acceptPeek, expect, expectPeek ---------------------------

    def _accept(self, *kinds: TokenKind) -> bool:
        found = self._accept_peek(*kinds)
        if found:
            self._lexer.scan()
        return found

    def _accept_peek(self, *kinds: TokenKind) -> bool:
        token = self._lexer.peek()
        if token.kind is TokenKind.EOF:
            raise _EndOfInput
        return token.kind in kinds

    def _expect(self, *kinds: TokenKind) -> Token:
        token = self._expect_peek(*kinds)
        self._lexer.scan()
        return token

    def _expect_peek(self, *kinds: TokenKind) -> Token:
        token = self._lexer.peek()
        if token.kind is TokenKind.EOF:
            raise _EndOfInput
        if token.kind not in kinds:
            raise MatcherError(f"{token.start}:{token.end}: unexpected {token.value}")
        return token

    def _expect_or(self, kinds: tuple[TokenKind, ...], what: str) -> Token:
        """``expect``, an error wrapped as Go's ``fmt.Errorf("%w: %w", err, what)``."""
        try:
            return self._expect(*kinds)
        except (LexError, _EndOfInput, MatcherError) as exc:
            raise MatcherError(f"{exc}: {what}") from None

    @staticmethod
    def _unquote(token: Token) -> str:
        try:
            return token.unquote()
        except ValueError:
            raise MatcherError(f"{token.start}:{token.end}: {token.value}: invalid input") from None
