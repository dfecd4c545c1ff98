"""A rule whose own match keeps it from ever acting is a load error naming the rule, its
file:line and why (receiver/rules/reach.py); a rule some alert can reach still loads. Pure."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from receiver.matchers import Matcher
from receiver.model import NamespacePolicy
from receiver.rules.reach import allowed_values
from tests.support.rules import errors_of

_TARGET = (
    '    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.d }}"}\n'
    "    steps: [{action: test.restart}]\n"
)


def _rule(*match: str, target: str = _TARGET) -> str:
    """A file with rule 'r' whose match items are on lines 4, 5, ... (one per line)."""
    items = "".join(f"      - '{m}'\n" for m in match)
    return f"rules:\n  - name: r\n    match:\n{items}{target}"


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        pytest.param(
            ('alertname="A"', 'd=""'),
            "a.yaml:5: rule 'r': match[1]: 'd=\"\"': label 'd' can only be empty or absent, "
            "and the target needs it ({{ labels.d }}): the rule can never act",
            id="needed-label-empty",
        ),
        pytest.param(
            ('alertname="A"', 'd=~"web|"', 'd!="web"'),
            "a.yaml:6: rule 'r': match[2]: 'd=~\"web|\"' and 'd!=\"web\"': label 'd' can only "
            "be empty or absent, and the target needs it ({{ labels.d }}): the rule can never act",
            id="needed-label-empty-by-two",
        ),
        pytest.param(
            ('alertname="A", namespace=~"|"',),
            "a.yaml:4: rule 'r': match[0]: 'namespace=~\"|\"': label 'namespace' can only be "
            "empty or absent",
            id="needed-label-empty-regex",
        ),
        pytest.param(
            ('alertname="A"', 'severity="page"', 'severity="info"'),
            "a.yaml:6: rule 'r': match[2]: no value of label 'severity' passes "
            "'severity=\"page\"' and 'severity=\"info\"': the rule can never match",
            id="two-values",
        ),
        pytest.param(
            ('alertname="A"', 'env=~"a|b"', 'env!~"a|b"'),
            "a.yaml:6: rule 'r': match[2]: no value of label 'env' passes 'env=~\"a|b\"' and "
            "'env!~\"a|b\"': the rule can never match",
            id="regex-and-its-negation",
        ),
        pytest.param(
            ('alertname="A"', 'env=~"prod.*"', 'env="staging"'),
            "a.yaml:6: rule 'r': match[2]: no value of label 'env' passes 'env=~\"prod.*\"' and "
            "'env=\"staging\"': the rule can never match",
            id="value-against-a-real-regex",
        ),
        pytest.param(
            ('alertname="A"', 'alertname="B"'),
            "a.yaml:5: rule 'r': match[1]: no value of label 'alertname' passes",
            id="two-alertnames",
        ),
        pytest.param(
            ('alertname="A"', 'd=~"web_api|Api"'),
            "a.yaml:3: rule 'r': match: target.name is valid for none of the values the matchers "
            "allow (d one of 'Api', 'web_api'): name 'Api' is not a DNS-1123 subdomain",
            id="pinned-name-invalid",
        ),
        pytest.param(
            ('alertname="A"', 'namespace="kube-system"'),
            "a.yaml:3: rule 'r': match: target.namespace is valid for none of the values the "
            "matchers allow (namespace one of 'kube-system'): namespace 'kube-system' is not "
            "allowed by policy",
            id="pinned-namespace-denied",
        ),
    ],
)
def test_a_rule_its_own_match_keeps_from_acting_is_refused(
    match: tuple[str, ...], expected: str
) -> None:
    """Each loaded silently: the rule then matched nothing, or refused every alert it matched
    ("label 'd' ... is missing or empty", "not a DNS-1123 subdomain", "not allowed")."""
    (error,) = errors_of({"a.yaml": _rule(*match)})
    assert error.startswith(expected), error


@pytest.mark.parametrize(
    "match",
    [
        ('alertname="A"', 'd!=""'),
        ('alertname="A"', 'd=~"web|"'),  # empty, or web
        ('alertname="A"', 'd=~"web|api"', 'd!="web"'),
        ('alertname="A"', 'namespace=~"kube-system|shop"'),
        ('alertname="A"', 'env=~"prod.*"', 'env!~"prod-eu.*"'),  # a real regex: not claimed
        ('alertname="A"', 'severity!="page"', 'severity!="info"'),
    ],
)
def test_a_rule_some_alert_can_reach_loads(match: tuple[str, ...]) -> None:
    assert errors_of({"a.yaml": _rule(*match)}) == []


def test_a_label_held_empty_that_the_target_does_not_need_is_no_fault() -> None:
    target = _TARGET.replace("{{ labels.d }}", "web")
    assert errors_of({"a.yaml": _rule('alertname="A"', 'd=""', target=target)}) == []


def test_an_annotation_in_the_target_is_never_judged_by_the_matchers() -> None:
    target = _TARGET.replace("labels.d", "annotations.d")
    assert errors_of({"a.yaml": _rule('alertname="A"', 'd=""', target=target)}) == []


def test_a_namespace_the_policy_allows_is_enough() -> None:
    policy = NamespacePolicy(allow=("shop",), deny=())
    assert (
        errors_of({"a.yaml": _rule('alertname="A"', 'namespace=~"kube-system|shop"')}, policy) == []
    )
    (error,) = errors_of({"a.yaml": _rule('alertname="A"', 'namespace=~"kube-system|web"')}, policy)
    assert "target.namespace is valid for none of the values" in error, error


_VALUES = ["", "a", "b", "ab", "a|b", "a|", "|b", "a.*", "[ab]", "(a|b)", "b+"]
_MATCHERS = st.builds(
    lambda op, value: Matcher("x", op, value),
    st.sampled_from(["=", "!=", "=~", "!~"]),
    st.sampled_from(_VALUES),
)


@given(st.lists(_MATCHERS, min_size=1, max_size=3), st.text(alphabet="ab|.", max_size=3))
def test_allowed_values_are_exactly_the_values_alertmanager_lets_through(
    matchers: list[Matcher], value: str
) -> None:
    """When the values are claimed known, a value passes every matcher (as Alertmanager
    reads them, on RE2) exactly when it is one of them."""
    allowed = allowed_values("x", matchers)
    assume(allowed is not None)
    assert allowed is not None
    passes = all(m.matches({"x": value}) for m in matchers)
    assert (value in allowed) == passes
    assert all(all(m.matches({"x": v}) for m in matchers) for v in allowed)
