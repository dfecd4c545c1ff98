"""One ``match`` item read the way Alertmanager reads a ``matchers:`` item by default. Pure.

Alertmanager v0.35.0 reads each item of a ``matchers:`` list with ``compat.Matchers``
(``config/common/matchers.go``), which in its default "fallback" mode is
``FallbackMatchersParser`` (``matcher/compat/parse.go``): both grammars parse the text;

- only the UTF-8 parser accepts it (``service.name=checkout``): its reading is used, silently;
- only the classic parser accepts it (``foo=~\\d+``, ``foo=two words``): the classic reading is
  used, and Alertmanager warns that the text is *incompatible* with the UTF-8 parser it is
  moving to (``--enable-feature=utf8-strict-mode`` would refuse it);
- both accept it and agree: that reading; both accept it and *disagree* (``a="x\\ty"`` is
  ``x<TAB>y`` in UTF-8, ``x\\ty`` classic): the classic reading, with a warning;
- neither accepts it: the classic parser's error.

``parse_item`` returns the reading and the warning; ``receiver.rules`` turns warnings into lint
warnings at the item's file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from receiver.matchers.classic import empty_piece, parse_classic
from receiver.matchers.model import GO_SPACE, Matcher, MatcherError
from receiver.matchers.utf8 import parse_utf8

__all__ = ["MatchersSyntaxError", "ParseWarning", "Parsed", "parse_item", "parse_matchers"]

ParseWarning = Literal["incompatible", "disagreement"]
# How the classic parser refuses a piece that is no matcher (classic.parse_one).
_BAD_FORMAT = "bad matcher format: "


class MatchersSyntaxError(MatcherError):
    """Neither grammar accepts the text. ``classic_error`` is what Alertmanager reports;
    ``utf8_error`` is usually the more helpful message for UTF-8 syntax. The message is both,
    except that a blank piece (``a=b,,c=d``), which Alertmanager quotes as nothing, is said as
    an empty matcher at the column of its comma (1-based, in ``text``)."""

    def __init__(self, text: str, classic_error: str, utf8_error: str) -> None:
        self.text = text
        self.classic_error = classic_error
        self.utf8_error = utf8_error
        said = classic_error
        blank = classic_error.startswith(_BAD_FORMAT) and not (
            classic_error.removeprefix(_BAD_FORMAT).strip("".join(GO_SPACE))
        )
        if blank and (where := empty_piece(text)) is not None:
            # Alertmanager quotes the blank piece, which reads as an empty quote: say where.
            before, after = where
            said = (
                f"an empty matcher before the comma at column {after}"
                if before is None
                else f"an empty matcher between two commas at column {before}"
            )
        if utf8_error == f"failed to create matcher: {classic_error}":
            # Both read the same matcher and its value was refused (a bad regex): say it once.
            super().__init__(classic_error)
        else:
            super().__init__(f"{said} (UTF-8 matcher parser: {utf8_error})")


@dataclass(frozen=True, slots=True)
class Parsed:
    """One item as Alertmanager's fallback mode reads it.

    ``matchers`` is the reading used; ``classic``/``utf8`` each grammar's reading, or its error
    message; ``warning`` what Alertmanager logs about the item, if anything.
    """

    text: str
    matchers: tuple[Matcher, ...]
    classic: tuple[Matcher, ...] | str
    utf8: tuple[Matcher, ...] | str
    warning: ParseWarning | None

    def describe_warning(self) -> str | None:
        """The warning in words, with the fix; None when there is none. Texts are shown in
        single quotes as written (backslashes not doubled), ready for a YAML single-quoted
        scalar."""
        if self.warning == "incompatible":
            suggestion = ",".join(str(m) for m in self.matchers)
            return (
                f"{_show(self.text)} is read by Alertmanager's classic matcher parser only (the "
                f"UTF-8 parser says: {self.utf8}); Alertmanager warns about it and "
                f"utf8-strict-mode refuses it. Write it as {_show(suggestion)} (values and "
                "regexes double-quoted, backslashes escaped)"
            )
        if self.warning == "disagreement":
            if not self.matchers:
                return f"{_show(self.text)} holds no matcher"
            classic = ",".join(str(m) for m in self.matchers)
            utf8 = ",".join(str(m) for m in self.utf8) if isinstance(self.utf8, tuple) else ""
            return (
                f"{_show(self.text)} is read differently by Alertmanager's two matcher parsers: "
                f"classic {_show(classic)}, UTF-8 {_show(utf8)}; Alertmanager (and this service) "
                "use the classic reading and log a disagreement. Quote and escape it so both "
                "agree"
            )
        return None


def _show(text: str) -> str:
    return "'" + text.replace("\n", "\\n") + "'"


def parse_item(text: str) -> Parsed:
    """``FallbackMatchersParser`` on one item. Raises MatchersSyntaxError when neither grammar
    accepts ``text``, MatcherError for a lone surrogate (text that has no UTF-8 form)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MatcherError(f"matcher text is not valid UTF-8: {text!r}") from None
    utf8: tuple[Matcher, ...] | str
    classic: tuple[Matcher, ...] | str
    try:
        utf8 = parse_utf8(text)
    except MatcherError as exc:
        utf8 = str(exc)
    try:
        classic = parse_classic(text)
    except MatcherError as exc:
        classic = str(exc)
    if isinstance(utf8, str):
        if isinstance(classic, str):
            raise MatchersSyntaxError(text, classic, utf8)
        return Parsed(text, classic, classic, utf8, "incompatible")
    # Go compares with reflect.DeepEqual, under which the UTF-8 parser's nil slice differs from
    # the classic parser's empty one: an empty item is always a "disagreement".
    if isinstance(classic, tuple) and (not utf8 or utf8 != classic):
        return Parsed(text, classic, classic, utf8, "disagreement")
    return Parsed(text, utf8, classic, utf8, None)


def parse_matchers(items: Sequence[str]) -> tuple[Matcher, ...]:
    """Every matcher of a ``matchers:``/``match:`` list, item by item as ``parse_item`` reads it
    (config/common/matchers.go ``Matchers.UnmarshalYAML``; the order is kept, not sorted).
    Raises MatcherError for the first item that does not parse."""
    if isinstance(items, str):
        # A bare string is a Sequence[str] too; iterating it would parse characters.
        raise MatcherError(f"expected a list of matchers, got the string {items!r}")
    return tuple(m for item in items for m in parse_item(item).matchers)
