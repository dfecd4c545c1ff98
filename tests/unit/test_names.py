"""Name rules against Kubernetes' own (apimachinery pkg/util/validation): tables and properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediations import names

# The good and bad values of apimachinery's validation_test.go (TestIsDNS1123Label,
# TestIsDNS1123Subdomain), so a drift from Kubernetes' rule shows up as a failing case.
LABEL_GOOD = [
    "a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2",
    "a" * 63,
]  # fmt: skip
LABEL_BAD = [
    "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1",
    "_", "a_", "_a", "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2",
    " ", "a ", " a", "a b", "1 ", " 1", "1 2", "a" * 64,
]  # fmt: skip
SUBDOMAIN_GOOD = [
    "a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2",
    "a.a", "ab.a", "abc.a", "a1.a", "a-1.a", "a--1--2--b.a",
    "a.1", "ab.1", "abc.1", "a1.1", "a-1.1", "a--1--2--b.1",
    "0.a", "01.a", "012.a", "1a.a", "1-a.a",
    "0.1", "01.1", "012.1", "1a.1", "1-a.1", "1--a--b--2.1",
    "a.b.c.d.e", "aa.bb.cc.dd.ee", "1.2.3.4.5", "11.22.33.44.55", "a" * 253,
]  # fmt: skip
SUBDOMAIN_BAD = [
    "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1",
    "_", "a_", "_a", "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a..b", "1.", ".1", "1..2",
    " ", "a ", " a", "a b", "1 ", " 1", "1 2",
    "A.a", "aB.a", "ab.A", "A1.a", "a1.A", "A.1", "aB.1", "A1.1", "1A.1",
    "0.A", "01.A", "012.A", "1A.a", "1a.A",
    "A.B.C.D.E", "AA.BB.CC.DD.EE", "a.B.c.d.e", "aa.bB.cc.dd.ee",
    "a@b", "a,b", "a_b", "a;b", "a:b", "a%b", "a?b", "a$b", "a" * 254,
]  # fmt: skip

# Where the two regexes this module replaced disagreed. remediations/kubernetes.py had
# `^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$` (any mix of '.' and '-' inside, and `$` lets a
# trailing newline through); receiver/templating.py had Kubernetes' pattern with fullmatch.
OLD_ACTIONS_ACCEPTED = ["a..b", "a-.b", "a.-b", "a.-.b", "web\n", "x" * 10 + "..." + "y"]


@pytest.mark.parametrize("value", LABEL_GOOD)
def test_label_accepts_what_kubernetes_accepts(value: str) -> None:
    assert names.is_dns1123_label(value)
    assert names.dns1123_label_errors(value) == []


@pytest.mark.parametrize("value", LABEL_BAD)
def test_label_rejects_what_kubernetes_rejects(value: str) -> None:
    assert not names.is_dns1123_label(value)


@pytest.mark.parametrize("value", SUBDOMAIN_GOOD)
def test_subdomain_accepts_what_kubernetes_accepts(value: str) -> None:
    assert names.is_dns1123_subdomain(value)


@pytest.mark.parametrize("value", SUBDOMAIN_BAD)
def test_subdomain_rejects_what_kubernetes_rejects(value: str) -> None:
    assert not names.is_dns1123_subdomain(value)


@pytest.mark.parametrize("value", OLD_ACTIONS_ACCEPTED)
def test_subdomain_rejects_what_the_old_action_regex_let_through(value: str) -> None:
    old = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    assert old.match(value), "the case no longer shows the old disagreement"
    assert not names.is_dns1123_subdomain(value)


@pytest.mark.parametrize("value", ["app\n", "a" * 63 + "\n"])
def test_label_rejects_a_trailing_newline_the_old_action_regex_allowed(value: str) -> None:
    old = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    assert old.match(value)
    assert not names.is_dns1123_label(value)


def test_segments_of_a_subdomain_have_no_length_limit_of_their_own() -> None:
    # IsDNS1123Subdomain checks only the whole length, so one 100-character part is fine.
    assert names.is_dns1123_subdomain("a" * 100 + ".b")
    assert not names.is_dns1123_label("a" * 100)


def test_error_messages_are_kubernetes_wording() -> None:
    assert names.dns1123_label_errors("a.b") == ["must not contain dots"]
    assert names.dns1123_label_errors("a" * 64) == ["must be no more than 63 characters"]
    assert names.dns1123_label_errors("A")[0].startswith("a lowercase RFC 1123 label")
    assert names.dns1123_subdomain_errors("a" * 254) == ["must be no more than 253 characters"]
    both = names.dns1123_subdomain_errors("A" * 254)
    assert len(both) == 2


# --------------------------------------------------------------------------------------------
# properties: an independent spelling of the rule (split into labels, look at each character)


def _label_by_hand(value: str, max_length: int | None = 63) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return (
        bool(value)
        and (max_length is None or len(value) <= max_length)
        and all(c in allowed for c in value)
        and value[0] != "-"
        and value[-1] != "-"
    )


def _subdomain_by_hand(value: str) -> bool:
    if not value or len(value) > 253:
        return False
    return all(_label_by_hand(part, max_length=None) for part in value.split("."))


NAME_TEXT = st.one_of(
    st.text(alphabet="ab09-.", max_size=12),
    st.text(alphabet="az-.A_\n ", max_size=8),
    st.text(max_size=10),
    # Around the length limits: 63/64 for a label, 253/254 for a subdomain.
    st.builds(lambda n, tail: "a" * n + tail, st.integers(60, 256), st.sampled_from(["", "-"])),
)


@given(NAME_TEXT)
def test_label_matches_the_rule_spelled_by_hand(value: str) -> None:
    assert names.is_dns1123_label(value) == _label_by_hand(value)


@given(NAME_TEXT)
def test_subdomain_matches_the_rule_spelled_by_hand(value: str) -> None:
    assert names.is_dns1123_subdomain(value) == _subdomain_by_hand(value)


@given(NAME_TEXT)
def test_every_label_is_a_subdomain(value: str) -> None:
    if names.is_dns1123_label(value):
        assert names.is_dns1123_subdomain(value)


# --------------------------------------------------------------------------------------------
# environment variables, connection names, selectors


@pytest.mark.parametrize(
    "value", ["A", "MY_ENV", "my.env-name", "MY_ENV.NAME", "MyEnvName1", "_x", "-x", ".x", "a..b"]
)
def test_env_var_name_accepted(value: str) -> None:
    assert names.is_env_var_name(value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "must consist of"),
        ("1BAD", "must not start with a digit"),
        ("A B", "must consist of"),
        ("A=B", "must consist of"),
        ("A\n", "must consist of"),
        ("Ä", "must consist of"),
        (".", "must not be '.'"),
        ("..", "must not be '..'"),
        ("..x", "must not start with '..'"),
    ],
)
def test_env_var_name_rejected(value: str, reason: str) -> None:
    assert any(reason in error for error in names.env_var_name_errors(value))


@pytest.mark.parametrize("value", ["orders", "a", "orders_replica", "db2", "x" * 63])
def test_connection_name_accepted(value: str) -> None:
    assert names.is_connection_name(value)


@pytest.mark.parametrize(
    "value", ["", "Orders", "2db", "_x", "orders-eu", "a.b", "a/b", "x" * 64, "orders\n"]
)
def test_connection_name_rejected(value: str) -> None:
    assert not names.is_connection_name(value)


@pytest.mark.parametrize(
    "value", ["app=web", "app=web,tier in (a,b)", "!canary", "a.b/c!=d", "a = b,\tc\r\n!= d"]
)
def test_label_selector_characters_accepted(value: str) -> None:
    assert names.is_label_selector(value)


@pytest.mark.parametrize(
    "value",
    ["", "app=x; rm -rf", "a='b'", "a=b&c=d", "a?b", "app=web\u3000", "app=\x0bweb", "a=\x1cb"],
)
def test_label_selector_characters_rejected(value: str) -> None:
    assert not names.is_label_selector(value)
