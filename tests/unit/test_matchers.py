"""The two matcher grammars, the fallback between them, and matching. Pure code.

Expected values are what Alertmanager v0.35.0 does with the same text (checked against its
code by tests/integration/test_matchers_differential.py; the messages are its messages).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.matchers import (
    Matcher,
    MatcherError,
    MatchersSyntaxError,
    Op,
    matches_all,
    parse_item,
    parse_matchers,
)
from receiver.matchers.classic import parse_classic, parse_one
from receiver.matchers.utf8 import parse_utf8


def M(name: str, op: Op, value: str) -> Matcher:
    return Matcher(name, op, value)


class TestClassicGrammar:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "alertname=Foo, severity=page",
                [M("alertname", "=", "Foo"), M("severity", "=", "page")],
            ),
            ("severity=page,", [M("severity", "=", "page")]),
            ("severity=page , ", [M("severity", "=", "page")]),
            ('{team="db", env!="dev", }', [M("team", "=", "db"), M("env", "!=", "dev")]),
            ('msg="a, b"', [M("msg", "=", "a, b")]),
            ('msg="say \\"x, y\\""', [M("msg", "=", 'say "x, y"')]),
            ("job=~api|web", [M("job", "=~", "api|web")]),
            ("a:b=c", [M("a:b", "=", "c")]),
            ("v= two words ", [M("v", "=", "two words")]),
            ("v==x", [M("v", "=", "=x")]),
            ('v="tab\\there"', [M("v", "=", "tab\\there")]),  # spurious escape kept
            ("v=ends\\", [M("v", "=", "ends\\")]),
            ('v="line\\nbreak"', [M("v", "=", "line\nbreak")]),
            ("{a=b}}", [M("a", "=", "b}")]),  # only one brace is trimmed
            ("", []),
            ("{}", []),
        ],
    )
    def test_parses(self, text: str, expected: list[Matcher]) -> None:
        assert list(parse_classic(text)) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("a=b,,c=d", "bad matcher format: "),
            (",", "bad matcher format: "),
            ('"k8s.pod"="x"', 'bad matcher format: "k8s.pod"="x"'),
            ("service.name=x", "bad matcher format: service.name=x"),
            ('v="x', 'matcher value contains unescaped double quote: "x'),
            ('v="a"b"', 'matcher value contains unescaped double quote: "a"b"'),
            ("\vv=x,a=b", "bad matcher format: \vv=x"),  # no \v in Go's \s; no trim but the last
        ],
    )
    def test_refuses_with_alertmanagers_message(self, text: str, message: str) -> None:
        with pytest.raises(MatcherError) as caught:
            parse_classic(text)
        assert str(caught.value) == message

    def test_parse_one_keeps_commas_in_an_unquoted_value(self) -> None:
        assert parse_one("a=b,c=d") == M("a", "=", "b,c=d")


class TestUtf8Grammar:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "alertname=Foo, severity=page",
                [M("alertname", "=", "Foo"), M("severity", "=", "page")],
            ),
            ("{severity=page,}", [M("severity", "=", "page")]),
            ('{"k8s.deployment.name"!=""}', [M("k8s.deployment.name", "!=", "")]),
            ("service.name=checkout", [M("service.name", "=", "checkout")]),
            ("名前=値", [M("名前", "=", "値")]),
            ('"a b"=~"x|y"', [M("a b", "=~", "x|y")]),
            ('v="tab\\there"', [M("v", "=", "tab\there")]),
            ('v="\\x41\\101\\u00e9\\U0001F600"', [M("v", "=", "AAé😀")]),
            ('v="\\xc3\\xa9"', [M("v", "=", "é")]),  # bytes that add up to UTF-8
            ("v=~[a-z]+", [M("v", "=~", "[a-z]+")]),
            ("\u00a0v\u2028=\u3000x", [M("v", "=", "x")]),  # Go's unicode.IsSpace
            ("", []),
            ("{}", []),
        ],
    )
    def test_parses(self, text: str, expected: list[Matcher]) -> None:
        assert list(parse_utf8(text)) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (",", "0:1: unexpected ,: expected label name"),
            ("{,}", "1:2: unexpected ,: expected label name"),
            ("{", "0:1: end of input: expected close brace"),
            ("}", "0:1: }: expected opening brace"),
            ("{foo=bar", "0:8: end of input: expected close brace"),
            ('{foo=:"bar"}', '6:11: unexpected "bar": expected a comma or close brace'),
            ("{foo=bar\\n}", "8:9: \\: invalid input: expected a comma or close brace"),
            ('{"foo"=~"\\d+"}', '8:13: "\\d+": invalid input'),
            ('v="\\xff"', '2:8: "\\xff": invalid input'),
            ('v="x', '2:4: "x: missing end ": expected label value'),
            (
                "a!b",
                "1:2: !: expected one of '=~': expected an operator such as '=', '!=', "
                "'=~' or '!~'",
            ),
            ("a=b,,c=d", "4:5: unexpected ,: expected a matcher or close brace after comma"),
            ("foo= two words", "9:14: unexpected words: expected a comma or close brace"),
            ("a=b c", "4:5: unexpected c: expected a comma or close brace"),
        ],
    )
    def test_refuses_with_alertmanagers_message(self, text: str, message: str) -> None:
        with pytest.raises(MatcherError) as caught:
            parse_utf8(text)
        assert str(caught.value) == message


class TestFallback:
    """matcher/compat FallbackMatchersParser, Alertmanager's default."""

    def test_both_agree(self) -> None:
        parsed = parse_item("alertname=HighMemoryUsage, severity=critical")
        assert parsed.matchers == (
            M("alertname", "=", "HighMemoryUsage"),
            M("severity", "=", "critical"),
        )
        assert parsed.warning is None
        assert parsed.describe_warning() is None

    def test_utf8_only_is_silent(self) -> None:
        parsed = parse_item("service.name=checkout")
        assert parsed.matchers == (M("service.name", "=", "checkout"),)
        assert parsed.warning is None
        assert isinstance(parsed.classic, str)

    def test_classic_only_warns_incompatible_with_a_suggestion(self) -> None:
        parsed = parse_item("foo=~\\d+")
        assert parsed.matchers == (M("foo", "=~", "\\d+"),)
        assert parsed.warning == "incompatible"
        description = parsed.describe_warning()
        assert description is not None
        assert "utf8-strict-mode" in description
        assert "'foo=~\"\\\\d+\"'" in description  # the suggestion, as Alertmanager prints it
        assert parse_item('foo=~"\\\\d+"').warning is None  # and the suggestion reads the same

    def test_disagreement_uses_the_classic_reading(self) -> None:
        parsed = parse_item('v="x\\ty"')
        assert parsed.matchers == (M("v", "=", "x\\ty"),)
        assert parsed.utf8 == (M("v", "=", "x\ty"),)
        assert parsed.warning == "disagreement"
        assert "read differently" in (parsed.describe_warning() or "")

    def test_empty_item_is_a_disagreement_as_in_go(self) -> None:
        parsed = parse_item("")
        assert parsed.matchers == ()
        assert parsed.warning == "disagreement"  # Go's DeepEqual(nil, []) is false

    def test_neither_gives_the_classic_error_and_the_utf8_one(self) -> None:
        with pytest.raises(MatchersSyntaxError) as caught:
            parse_item("a=b,,c=d")
        assert caught.value.classic_error == "bad matcher format: "
        assert caught.value.utf8_error.endswith("expected a matcher or close brace after comma")
        assert "UTF-8 matcher parser" in str(caught.value)

    @pytest.mark.parametrize(
        ("text", "said"),
        [
            ("alertname=A,,severity=b", "an empty matcher between two commas at column 12"),
            ("a=b, ,c=d", "an empty matcher between two commas at column 4"),
            ('a="x,,y",,b=c', "an empty matcher between two commas at column 9"),
            ("{a=b,,}", "an empty matcher between two commas at column 5"),
            (",a=b", "an empty matcher before the comma at column 1"),
            ("{,a=b}", "an empty matcher before the comma at column 2"),
            # The classic parser's first refusal is of another piece: its words stay.
            ("a b,,c=d", "bad matcher format: a b"),
        ],
    )
    def test_an_empty_piece_is_said_with_its_column(self, text: str, said: str) -> None:
        # Alertmanager's "bad matcher format: " quotes the empty piece as nothing.
        with pytest.raises(MatchersSyntaxError) as caught:
            parse_item(text)
        assert str(caught.value).startswith(f"{said} (UTF-8 matcher parser: ")
        assert caught.value.classic_error.startswith("bad matcher format: ")

    def test_a_bad_regex_is_said_once(self) -> None:
        with pytest.raises(MatchersSyntaxError) as caught:
            parse_item('severity=~"(x"')
        assert str(caught.value) == (
            'invalid regular expression in severity=~"(x": error parsing regexp: '
            "missing closing ): `^(?:(x)$`"
        )

    def test_lone_surrogate_is_refused(self) -> None:
        with pytest.raises(MatcherError, match="not valid UTF-8"):
            parse_item('a="\ud800"')

    def test_parse_matchers_concatenates_items(self) -> None:
        assert parse_matchers(["a=b, c=d", '{"e.f"="g"}']) == (
            M("a", "=", "b"),
            M("c", "=", "d"),
            M("e.f", "=", "g"),
        )
        with pytest.raises(MatcherError, match="list of matchers"):
            parse_matchers("a=b")


class TestMatching:
    @pytest.mark.parametrize(
        ("text", "labels", "expected"),
        [
            ('a="x"', {"a": "x"}, True),
            ('a="x"', {"a": "xy"}, False),
            ('a=""', {}, True),  # a missing label is the empty string
            ('a!=""', {}, False),
            ('a!="x"', {}, True),
            ('a=~"x+"', {"a": "xx"}, True),
            ('a=~"x"', {"a": "xx"}, False),  # anchored at both ends
            ('a=~"b|c"', {"a": "bc"}, False),
            ('a=~".*"', {}, True),
            ('a!~".+"', {}, True),
            ('a=~"x"', {"a": "x\n"}, False),
            ('"k8s.deployment.name"!=""', {"k8s.deployment.name": "cart"}, True),
            ('"k8s.deployment.name"!=""', {"k8s_deployment_name": "cart"}, False),
        ],
    )
    def test_matches(self, text: str, labels: dict[str, str], expected: bool) -> None:
        assert matches_all(parse_item(text).matchers, labels) is expected

    def test_matches_all(self) -> None:
        matchers = parse_matchers(['alertname="A", severity=~"warning|critical"', 'team!=""'])
        assert matches_all(matchers, {"alertname": "A", "severity": "critical", "team": "db"})
        assert not matches_all(matchers, {"alertname": "A", "severity": "critical"})
        assert matches_all((), {})

    def test_direct_construction_is_validated(self) -> None:
        with pytest.raises(MatcherError, match="operator"):
            Matcher("a", "==", "x")  # type: ignore[arg-type]
        with pytest.raises(MatcherError, match="regular expression"):
            Matcher("a", "=~", "(")


class TestString:
    """``str(matcher)`` is Alertmanager's ``Matcher.String()``."""

    @pytest.mark.parametrize(
        ("matcher", "text"),
        [
            (M("q", "!=", 'a"b\\c\nd'), 'q!="a\\"b\\\\c\\nd"'),
            (M("service.name", "=", "x"), 'service.name="x"'),  # no reserved character
            (M("a b", "=~", "x\ty"), '"a b"=~"x\\ty"'),  # strconv.Quote for both
            (M("a,b", "=", "é\x00"), '"a,b"="é\\x00"'),
        ],
    )
    def test_str(self, matcher: Matcher, text: str) -> None:
        assert str(matcher) == text


_NAMES = st.one_of(
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,5}", fullmatch=True),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=6),
)


@given(name=_NAMES, op=st.sampled_from(["=", "!="]), value=st.text(max_size=12))
def test_str_reads_back_the_same_in_fallback_mode(name: str, op: Op, value: str) -> None:
    matcher = Matcher(name, op, value)
    parsed = parse_item(str(matcher))
    assert parsed.matchers == (matcher,)
