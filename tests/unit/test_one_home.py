"""Each fact in one home (issue 7): the late-delivery window, the approval TTL, the DNS-1123 label
rule and the control plane's cold build time are stated once and read from there; and a JSON
error says "at line", not "at at line"."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from receiver import alertmanager
from receiver.alertmanager import PayloadError, parse_notification_carefully
from receiver.approvals.desk import ApprovalDesk
from receiver.config import Settings
from receiver.config.settings import APPROVAL_TTL_S
from receiver.store.events import EventQueue
from remediations.numerals import is_whole_number
from tests.support.rules import TARGET, errors_of

ROOT = Path(__file__).resolve().parents[2]


def _literal_count(pattern: str) -> int:
    # Histogram buckets are a scale of durations, not a setting's value.
    return sum(
        len(re.findall(pattern, line))
        for path in (ROOT / "receiver").rglob("*.py")
        for line in path.read_text().splitlines()
        if "buckets=" not in line
    )


def test_the_late_delivery_window_has_one_home() -> None:
    window = alertmanager.LATE_DELIVERY_WINDOW_S
    assert Settings().late_delivery_window_seconds == window
    assert EventQueue.late_delivery_window_s == window
    assert _literal_count(r"\b330(\.0)?\b") == 1


def test_the_approval_ttl_has_one_home() -> None:
    assert Settings().approval_ttl_seconds == APPROVAL_TTL_S
    assert inspect.signature(ApprovalDesk).parameters["ttl_s"].default == APPROVAL_TTL_S
    assert (
        _literal_count(r"\b1800(\.0)?\b") == 3
    )  # the TTL, the breaker's open_for, the incident gap


def test_the_rule_name_is_the_one_dns_label_rule() -> None:
    # No regex of its own in the schema: the rule is remediations.names'.
    assert "re.compile" not in (ROOT / "receiver" / "rules" / "schema.py").read_text()
    for name, ok in (("a" * 63, True), ("a" * 64, False), ("web-1", True), ("Web", False)):
        text = f"rules:\n  - name: {name}\n    match: ['a=\"b\"']\n    {TARGET}"
        text += "    steps: [{action: test.restart}]\n"
        assert (errors_of({"a.yaml": text}) == []) is ok, name


@given(st.text(max_size=30))
@example("-017")
@example("9_096")
@example("\uff15")  # a full-width 5, which int() reads
def test_the_whole_number_pattern_has_one_home(text: str) -> None:
    # It was written four times (the rule and settings loaders, params, the query filters,
    # the CLI's integers); all now ask remediations.numerals.
    digits = text.removeprefix("-")
    assert is_whole_number(text) is (bool(digits) and all(c in "0123456789" for c in digits))
    homes = [
        path.relative_to(ROOT)
        for package in ("receiver", "remediations")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"-\?\[0-9\]\+", path.read_text())
    ]
    assert homes == [Path("remediations/numerals.py")]


def test_the_cold_build_time_is_quoted_the_same_everywhere() -> None:
    places = [
        ROOT / "README.md",
        ROOT / "Makefile",
        ROOT / "hack" / "controlplane" / "build.sh",
        ROOT / "tests" / "support" / "kube.py",
    ]
    quoted = set()
    for path in places:
        text = " ".join(path.read_text().split())
        for match in re.finditer(r"(\d+(?:-\d+)?) minutes", text):
            window = text[max(0, match.start() - 80) : match.end() + 40]
            if "cold" in window and "control plane" in text:
                quoted.add(match.group(1))
    assert quoted == {"8"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"a": "unterminated', "Unterminated string starting at line 1 column 7"),
        (b'{"a": "x\ny"}', "Invalid control character at line 1 column 9"),
        (b'{"a": 1,}', "Expecting property name enclosed in double quotes at line 1 column 9"),
    ],
)
def test_a_json_error_says_at_line_once(body: bytes, says: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_notification_carefully(body)
    assert caught.value.message == f"invalid JSON: {says}"
    assert "at at" not in caught.value.message
