"""The rules loader (``parse_yaml``) and the settings and approvers loader (``safe_load``) call
the same keys duplicates, at the same lines: both take them from ``duplicate_keys``."""

from __future__ import annotations

import pytest

from receiver.rules.yaml_lines import DuplicateKey, Located, parse_yaml, safe_load

# (document, the (line, first line) of each duplicate, in the order written)
DOCUMENTS = [
    ("a: 1\nb: 2\n", []),
    ("a: 1\na: 2\n", [(2, 1)]),
    ("a: 1\nb: 2\na: 3\na: 4\n", [(3, 1), (4, 1)]),
    ("top:\n  x: 1\n  y: 2\n  x: 3\n", [(4, 2)]),
    ("- x: 1\n- x: 2\n  y: 3\n  x: 4\n", [(4, 2)]),
    # A merged key may be overridden by a written one: YAML means it so.
    ("base: &b\n  x: 1\nuse:\n  <<: *b\n  x: 2\n", []),
    # Two written keys are a mistake even beside a merge.
    ("base: &b\n  x: 1\nuse:\n  <<: *b\n  y: 2\n  y: 3\n", [(6, 5)]),
    # YAML 1.1's value key `=` is the string "=" (it loaded before duplicates were shared).
    ("=: 1\na: 2\n", []),
    ("=: 1\n=: 2\n", [(2, 1)]),
    # A merged key overridden in a mapping that is used again through an alias: no mistake,
    # on either visit.
    ("base: &b\n  x: 1\ninner: &i\n  <<: *b\n  x: 2\nuse: *i\n", []),
    # An alias repeats a mapping, not its mistake: reported once, where it was written.
    ("base: &b\n  x: 1\n  x: 2\nuse: *b\n", [(3, 2)]),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENTS)
def test_both_loaders_name_the_same_duplicates(text: str, expected: list[tuple[int, int]]) -> None:
    located = Located("rules.yaml")
    parse_yaml(text, located)
    reported = [(e.line, e.message) for e in located.errors]
    assert [line for line, _ in reported] == [line for line, _ in expected]
    for (_, message), (_, first) in zip(reported, expected, strict=True):
        assert message.startswith("duplicate key")
        assert f"(first at line {first})" in message
    if not expected:
        # Both loaders build the same data (the override holds through the alias too).
        assert parse_yaml(text, Located("again.yaml")) == safe_load(text)
        return
    with pytest.raises(DuplicateKey) as raised:
        safe_load(text)
    # safe_load stops at the first mistake it meets.
    assert raised.value.line in {line for line, _ in expected}
