"""The rule set the live-conditions tests are written against: a rule that rolls back a recent
rollout and scales out past an old one, settles and announces, and one that acts only when a
rollout is recent.

Shared by tests/unit/test_live_conditions.py and test_live_condition_rules.py. ``rules`` is a
module-scoped fixture: a test module takes it up with ``rules = live_rules.rules``.
"""

from __future__ import annotations

import pytest

from receiver.model import NamespacePolicy
from receiver.rules.compile import compile_files
from receiver.rules.model import RuleSet
from tests.support.rules import registry

__all__ = ["POLICY", "RULES", "rules"]


POLICY = NamespacePolicy()

RULES = """\
rules:
  - name: errors
    match: ['alertname="HighErrorRate"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.undo
        when: {rolled_out_within: 30m}
      - action: test.scale
        when: {not_rolled_out_within: 30m}
        params: {delta: 2, max: 10}
      - action: test.restart
    verify: {resolved_within: 10m, settle: 30m}
    on_failed:
      - action: test.restart
      - action: test.grow
        params: {container: app, factor: 2}
        approval: required
    notify: {channel: oncall, events: [refused, verification_failed]}
  - name: only-when-recent
    match: ['alertname="Canary"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.undo
        when: {rolled_out_within: 1h, repeated: {times: 1, within: 1h}}
"""


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return compile_files({"rules.yaml": RULES}, registry(), POLICY)
