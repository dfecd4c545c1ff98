"""Matcher syntax and semantics, held to what Alertmanager's pkg/labels does with the same text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.matchers import (
    Matcher,
    MatcherError,
    Op,
    matches_all,
    parse_matcher,
    parse_matchers,
)


class TestParsing:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('alertname="HighMemoryUsage"', Matcher("alertname", "=", "HighMemoryUsage")),
            ("severity=critical", Matcher("severity", "=", "critical")),
            ('  severity != "info"  ', Matcher("severity", "!=", "info")),
            ('severity=~"warning|critical"', Matcher("severity", "=~", "warning|critical")),
            ("job!~api-.*", Matcher("job", "!~", "api-.*")),
            ('foo=""', Matcher("foo", "=", "")),
            ("foo=", Matcher("foo", "=", "")),
            ('foo=" padded "', Matcher("foo", "=", " padded ")),
            ("foo= two words ", Matcher("foo", "=", "two words")),
            ("foo==bar", Matcher("foo", "=", "=bar")),
            ("__name__=up", Matcher("__name__", "=", "up")),
            ("a:b=c", Matcher("a:b", "=", "c")),
            (r'q="say \"hi\""', Matcher("q", "=", 'say "hi"')),
            (r'q="back\\slash"', Matcher("q", "=", "back\\slash")),
            (r'q="line\nbreak"', Matcher("q", "=", "line\nbreak")),
            # Alertmanager keeps a spurious escape, and a trailing backslash, literally.
            (r'q="\d+"', Matcher("q", "=", r"\d+")),
            ("q=ends\\", Matcher("q", "=", "ends\\")),
            ('q="raw\nnewline"', Matcher("q", "=", "raw\nnewline")),
            ("q=ünïcødé", Matcher("q", "=", "ünïcødé")),
        ],
    )
    def test_parse(self, text: str, expected: Matcher) -> None:
        assert parse_matcher(text) == expected

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("", "bad matcher format"),
            ("alertname", "bad matcher format"),
            ('="x"', "bad matcher format"),
            ('1abc="x"', "bad matcher format"),
            ('foo-bar="x"', "bad matcher format"),
            ('foo~="x"', "bad matcher format"),
            ('foo<"x"', "bad matcher format"),
            ('foo="unterminated', "closing double quote"),
            ('foo="', "closing double quote"),
            ('foo="a"b"', "unescaped double quote"),
            ('foo=a"b', "unescaped double quote"),
            ('foo="a" "b"', "unescaped double quote"),
            ('foo=~"(unclosed"', "invalid regular expression"),
            ('foo=~"[a-"', "invalid regular expression"),
            ('foo=~"*"', "invalid regular expression"),
        ],
    )
    def test_parse_errors_name_the_text(self, text: str, fragment: str) -> None:
        with pytest.raises(MatcherError, match=re.escape(fragment)) as caught:
            parse_matcher(text)
        if text:
            assert repr(text) in str(caught.value) or text.split("=")[0] in str(caught.value)

    def test_parse_matchers(self) -> None:
        parsed = parse_matchers(['alertname="A"', "severity=~warning|critical"])
        assert parsed == (
            Matcher("alertname", "=", "A"),
            Matcher("severity", "=~", "warning|critical"),
        )
        assert parse_matchers([]) == ()

    def test_parse_matchers_refuses_a_bare_string(self) -> None:
        with pytest.raises(MatcherError, match="list of matchers"):
            parse_matchers('alertname="A"')

    def test_direct_construction_is_validated(self) -> None:
        with pytest.raises(MatcherError, match="label name"):
            Matcher("bad-name", "=", "x")
        with pytest.raises(MatcherError, match="operator"):
            Matcher("a", "==", "x")  # type: ignore[arg-type]
        with pytest.raises(MatcherError, match="regular expression"):
            Matcher("a", "=~", "(")

    def test_str_is_alertmanager_syntax(self) -> None:
        assert str(Matcher("q", "!=", 'a"b\\c\nd')) == r'q!="a\"b\\c\nd"'


class TestSemantics:
    @pytest.mark.parametrize(
        ("matcher", "labels", "expected"),
        [
            ('a="x"', {"a": "x"}, True),
            ('a="x"', {"a": "xy"}, False),
            ('a="x"', {}, False),
            ('a=""', {}, True),  # a missing label is the empty string
            ('a=""', {"a": ""}, True),
            ('a=""', {"a": "x"}, False),
            ('a!=""', {}, False),  # so != "" demands presence
            ('a!=""', {"a": "x"}, True),
            ('a!="x"', {}, True),
            ('a!="x"', {"a": "x"}, False),
            ('a=~"x"', {"a": "xx"}, False),  # anchored at both ends
            ('a=~"x+"', {"a": "xx"}, True),
            ('a=~"b|c"', {"a": "bc"}, False),  # the anchor covers every alternative
            ('a=~"b|c"', {"a": "c"}, True),
            ('a=~".*"', {}, True),
            ('a=~".+"', {}, False),
            ('a=~"x.*"', {"a": "x\ny"}, False),  # `.` stops at newlines as in RE2
            ('a=~"(?s)x.*"', {"a": "x\ny"}, True),
            ('a=~"x"', {"a": "x\n"}, False),  # no "$ before a final newline" in RE2
            ('a!~"x"', {"a": "x\n"}, True),
            ('a!~"x|y"', {"a": "x"}, False),
            ('a!~"x|y"', {"a": "xy"}, True),
            ('a!~".+"', {}, True),
            ('a=~"\\d+"', {"a": "123"}, True),
            ('a=~"\\d+"', {"a": "\u0663"}, False),  # Go's \d is ASCII only
            ('a=~"[[:digit:]]+"', {"a": "42"}, True),
            ('a=~"[[:alpha:]]+"', {"a": "[:alpha:]"}, False),
            ('a=~"(?i)CRIT"', {"a": "crit"}, True),
            ('a=~"x(?i)y|z"', {"a": "xY"}, True),
            ('a=~"x(?i)y|z"', {"a": "Z"}, True),  # RE2: the flag holds to the group's end
            ('a=~"x(?i)y|z"', {"a": "Xy"}, False),
            ('a=~"(x(?i)y)z"', {"a": "xYz"}, True),
            ('a=~"(x(?i)y)z"', {"a": "xyZ"}, False),
            ('a=~"x{,2}"', {"a": "x{,2}"}, True),  # literal in RE2, a repetition in Python
            ('a=~"x{,2}"', {"a": "xx"}, False),
            ('a=~"x{2}"', {"a": "xx"}, True),
            ('a=~"\\\\x{41}"', {"a": "A"}, True),
            ('a=~"end\\\\z"', {"a": "end"}, True),
            ('a=~"(?P<n>x)"', {"a": "x"}, True),
            ('a=~"(?<n>x)"', {"a": "x"}, True),
            ('a=~"[]x]+"', {"a": "]x"}, True),
        ],
    )
    def test_matches(self, matcher: str, labels: dict[str, str], expected: bool) -> None:
        assert parse_matcher(matcher).matches(labels) is expected

    @pytest.mark.parametrize(
        "regex",
        [
            "(?=x)",
            "(?!x)",
            "(?<=x)",
            "(?<!x)",
            "(x)\\\\1",
            "(?P<n>x)(?P=n)",
            "(?(1)x|y)",
            "(?>x)",
            "(?#comment)",
            "x*+",
            "x++",
            "x{2}+",
            "x{1001}",
            "x{3,2}",
            "(?x)x",
            "(?U)x",
            "(?a)x",
            "(?)",
            "\\\\Z",
            "\\\\p{L}",
            "\\\\Q.\\\\E",
            "[\\\\b]",
            "[[:^alpha:]]",
            "[[:nope:]]",
            "(x",
            "x)",
        ],
    )
    def test_python_only_or_invalid_regex_is_refused(self, regex: str) -> None:
        with pytest.raises(MatcherError, match="invalid regular expression"):
            parse_matcher(f'a=~"{regex}"')

    def test_matches_all(self) -> None:
        matchers = parse_matchers(['alertname="A"', 'severity=~"warning|critical"', 'team!=""'])
        assert matches_all(matchers, {"alertname": "A", "severity": "critical", "team": "db"})
        assert not matches_all(matchers, {"alertname": "A", "severity": "critical"})
        assert matches_all((), {})


# --- properties against a reference written from Alertmanager's documented rules -----------

NAMES = ("a", "b", "c")
VALUES = st.text(alphabet="xy\n", max_size=4)
LABELS = st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=3)
# Regexes built from pieces whose meaning RE2 and Python share, so the reference may use re.
ATOMS = st.sampled_from(["x", "y", ".", "[xy]", "[^x]", "(x|y)", "(?:xy)", "\\n"])
QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{1,2}", "*?"])
REGEXES = st.lists(st.tuples(ATOMS, QUANTIFIERS).map("".join), max_size=4).map("".join)
REGEX_ALTERNATIONS = st.lists(REGEXES, min_size=1, max_size=3).map("|".join)


def reference_matches(name: str, op: str, value: str, labels: dict[str, str]) -> bool:
    actual = labels.get(name, "")
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    anchored = re.match(f"^(?:{value})\\Z", actual) is not None
    return anchored if op == "=~" else not anchored


def _escape(value: str) -> str:
    out = []
    for char in value:
        out.append({"\\": "\\\\", '"': '\\"', "\n": "\\n"}.get(char, char))
    return "".join(out)


@given(
    name=st.sampled_from(NAMES),
    op=st.sampled_from(["=", "!="]),
    value=VALUES,
    labels=LABELS,
)
def test_equality_against_reference(name: str, op: Op, value: str, labels: dict[str, str]) -> None:
    matcher = parse_matcher(f'{name}{op}"{_escape(value)}"')
    assert matcher.matches(labels) == reference_matches(name, op, value, labels)


@given(
    name=st.sampled_from(NAMES),
    op=st.sampled_from(["=~", "!~"]),
    regex=REGEX_ALTERNATIONS,
    labels=LABELS,
)
def test_regex_against_reference(name: str, op: Op, regex: str, labels: dict[str, str]) -> None:
    matcher = parse_matcher(f'{name}{op}"{_escape(regex)}"')
    assert matcher.value == regex
    assert matcher.matches(labels) == reference_matches(name, op, regex, labels)


@given(name=st.sampled_from(NAMES), op=st.sampled_from(["=~", "!~"]), labels=LABELS)
def test_negation_is_exact_complement(name: str, op: Op, labels: dict[str, str]) -> None:
    positive = parse_matcher(f'{name}=~"x|y*"')
    negative = parse_matcher(f'{name}!~"x|y*"')
    assert positive.matches(labels) is not negative.matches(labels)


@given(value=st.text())
def test_quoted_value_round_trip(value: str) -> None:
    parsed = parse_matcher(f'  label = "{_escape(value)}"  ')
    assert parsed.value == value
    assert parse_matcher(str(parsed)) == parsed


@given(value=st.text(alphabet='ab"\\n \t', max_size=12), op=st.sampled_from(["=", "!="]))
def test_str_round_trip_with_quotes_and_backslashes(value: str, op: Op) -> None:
    matcher = Matcher("label", op, value)
    assert parse_matcher(str(matcher)) == matcher
