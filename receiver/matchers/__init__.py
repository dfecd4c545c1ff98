"""Alertmanager's label matchers, exactly as Alertmanager v0.35.0 reads and applies them. Pure.

- ``model``: ``Matcher`` (``pkg/labels/matcher.go``), ``matches_all``, ``MatcherError``.
- ``classic``: the classic grammar (``pkg/labels/parse.go`` ``ParseMatchers``).
- ``utf8_lexer`` and ``utf8``: the UTF-8 grammar (``matcher/parse``).
- ``compat``: one ``match`` item read in Alertmanager's default fallback mode
  (``matcher/compat/parse.go``), with the warning Alertmanager would log.
- ``regex``: regex values compiled as Go's ``regexp`` does, on RE2; ``go_unicode``: the
  ``\\p{...}`` names Go knows.

``tests/integration/test_matchers_differential.py`` holds all of it to Alertmanager's own code
(``hack/amoracle``). The names below are the public surface.
"""

from receiver.matchers.compat import (
    MatchersSyntaxError,
    Parsed,
    ParseWarning,
    parse_item,
    parse_matchers,
)
from receiver.matchers.model import Matcher, MatcherError, Op, matches_all

__all__ = [
    "Matcher",
    "MatcherError",
    "MatchersSyntaxError",
    "Op",
    "ParseWarning",
    "Parsed",
    "matches_all",
    "parse_item",
    "parse_matchers",
]
