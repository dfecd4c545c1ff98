"""Regex matcher values: RE2 with Go's meaning, anchored as Alertmanager anchors them. Pure.

The expected verdicts are Go's (checked against Alertmanager's code by
tests/integration/test_matchers_differential.py).
"""

from __future__ import annotations

import pytest

from receiver.matchers import Matcher, MatcherError
from receiver.matchers.regex import Regex, RegexError


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        # RE2 syntax that a translation to Python's re refused or changed
        ("\\p{Greek}+", "αβγ", True),
        ("\\p{Greek}+", "abc", False),
        ("\\PL+", "123", True),
        ("(?U)a+b", "aab", True),
        ("\\Qa.b\\E", "a.b", True),
        ("\\Qa.b\\E", "axb", False),
        ("x{,2}", "x{,2}", True),  # not a repetition in RE2
        # Unicode case folding as in Go: Kelvin sign, long s, final sigma
        ("(?i)k", "\u212a", True),
        ("(?i)s", "ſ", True),  # noqa: RUF001
        ("(?i)σ", "ς", True),  # noqa: RUF001
        ("(?i)ǅ", "ǆ", True),
        ("k", "\u212a", False),
        # ASCII Perl classes, as in Go
        ("\\d+", "\u0663", False),
        ("\\w+", "é", False),
        ("\\s", "\u00a0", False),
        # anchored at both ends; no "$ before a final newline"
        ("crit", "critical", False),
        ("x", "x\n", False),
        (".*", "a\nb", False),
        ("(?s).*", "a\nb", True),
        ("(?m)^b$", "a\nb", False),  # the outer ^ and $ still anchor the text
        # Go 1.26's \p names: any case, no _ - or space, aliases, specials
        ("\\p{greek}", "α", True),  # noqa: RUF001
        ("\\p{Letter}", "é", True),
        ("\\p{ L u }", "É", True),
        ("\\p{Lowercase_Letter}", "É", False),
        ("\\p{LC}", "ǅ", True),
        ("\\p{ASCII}+", "abc", True),
        ("\\p{ASCII}", "é", False),
        ("\\p{Any}", "\U0010ffff", True),
        ("\\p{C}", "\u0378", True),  # Go's C includes unassigned code points
        ("\\P{Assigned}", "\u0378", True),
        ("\\p{Cn}", "a", False),
        ("[\\p{LC}1]+", "a1", True),
        ("[^\\p{LC}]", "1", True),
    ],
)
def test_matches_as_go_does(pattern: str, value: str, expected: bool) -> None:
    assert Regex(pattern).matches(value) is expected


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("\\C", "RE2 has it, Go does not"),
        ("(?P<é>x)", "ASCII letters, digits and _"),
        ("(?<名>x)", "ASCII letters, digits and _"),
        ("\\p{Old_Italic}", "invalid character class range"),  # Go 1.26 drops the _ on lookup
        ("\\p{Garay}", "invalid character class range"),  # Unicode 16: neither knows it
        ("\\p{Nope}", "invalid character class range: `\\p{Nope}`"),
        ("[\\p{C}]", "write it outside them"),
        ("[\\P{LC}x]", "write it outside them"),
        ("(?=x)", "invalid or unsupported Perl syntax"),
        ("(?<=x)", "`(?<="),
        ("(x)\\1", "invalid escape sequence: `\\1`"),
        ("x**", "invalid nested repetition operator: `**`"),
        ("x{1001}", "invalid repeat count: `{1001}`"),
        ("(a{2}){600}", "invalid repeat count"),
        ("\\Z", "invalid escape sequence: `\\Z`"),
        ("(x", "missing closing ): `^(?:(x)$`"),
        ("[a", "missing closing ]"),
        ("\\Qab", "missing closing )"),  # \Q swallows Alertmanager's closing parenthesis
    ],
)
def test_refuses_what_go_refuses(pattern: str, fragment: str) -> None:
    with pytest.raises(RegexError) as caught:
        Regex(pattern)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("error parsing regexp: ")


def test_the_anchors_are_alertmanagers_string_concatenation() -> None:
    """``^(?:`` + value + ``)$``: a value that closes the group escapes the anchors there too."""
    regex = Regex("a)|(b")
    assert regex.matches("anything starting with a")
    assert regex.matches("ends with b")
    assert not regex.matches("neither")
    assert regex.escapes_anchors
    assert not Regex("(a)|(b)").escapes_anchors
    assert not Regex("\\Q)\\E").escapes_anchors
    assert Matcher("x", "=~", "a)|(b").escapes_anchors
    assert not Matcher("x", "=", "a)|(b").escapes_anchors


def test_a_lone_surrogate_value_matches_as_go_reads_it() -> None:
    # Go's JSON decoder turns "\ud800" into U+FFFD.
    assert Regex("\ufffd").matches("\ud800")
    assert not Regex("x").matches("\ud800")


def test_verdicts_are_remembered_and_the_memory_is_bounded() -> None:
    regex = Regex("warning|critical")
    for i in range(3000):
        assert regex.matches(f"v{i}") is False
    assert regex.matches("critical") is True
    assert regex.matches("critical") is True  # from memory: the same answer
    assert len(regex._memo) <= 1024
    assert regex.matches("x" * 1000) is False
    assert "x" * 1000 not in regex._memo


def test_a_bad_regex_in_a_matcher_names_the_matcher() -> None:
    with pytest.raises(MatcherError) as caught:
        Matcher("severity", "!~", "(x")
    assert str(caught.value).startswith('invalid regular expression in severity!~"(x": ')
