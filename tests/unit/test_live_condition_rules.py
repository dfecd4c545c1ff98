"""Live conditions, verification settings and announcements in rule files: the syntax they
compile to, and errors that name the line and the fix. Pure."""

from __future__ import annotations

import pytest

from receiver.facts import FactKind
from receiver.model import Announce, Announcement
from receiver.rules.compile import compile_files
from receiver.rules.model import LiveCondition, RuleSet
from tests.support import live_rules
from tests.support.live_rules import POLICY
from tests.support.rules import TARGET, errors_of, one_rule, registry

# The rule set, compiled once per module (a fixture: tests take it by name).
rules = live_rules.rules


def test_the_new_syntax_compiles_to_conditions_settle_ladder_and_announcements(
    rules: RuleSet,
) -> None:
    rule = rules.by_name("errors")
    assert rule is not None
    assert rule.steps[0].conditions == (LiveCondition(FactKind.ROLLOUT, 1800.0),)
    assert rule.steps[1].conditions == (LiveCondition(FactKind.ROLLOUT, 1800.0, negate=True),)
    assert rule.steps[1].conditions[0].name == "not_rolled_out_within"
    assert rule.steps[2].conditions == ()
    assert (rule.verify_within_s, rule.settle_s) == (600.0, 1800.0)
    assert [(s.action, s.needs_approval) for s in rule.on_failed] == [
        ("test.restart", False),
        ("test.grow", True),
    ]
    assert rule.announce == Announce(
        "oncall", frozenset({Announcement.REFUSED, Announcement.VERIFICATION_FAILED})
    )
    assert rule.facts == frozenset({FactKind.ROLLOUT})
    both = rules.by_name("only-when-recent")
    assert both is not None
    assert both.steps[0].repeated is not None
    assert both.steps[0].conditions == (LiveCondition(FactKind.ROLLOUT, 3600.0),)


def test_notify_without_events_announces_every_moment() -> None:
    text = one_rule(TARGET + "steps: [{action: test.restart}]\nnotify: {channel: oncall}\n")
    (rule,) = compile_files({"a.yaml": text}, registry(), POLICY).rules
    assert rule.announce == Announce("oncall")
    assert rule.announce is not None
    assert rule.announce.events == frozenset(Announcement)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n    when: {}\n",
            "a.yaml:7: rule 'r': steps[0].when: `when` needs a condition: repeated, "
            "rolled_out_within, not_rolled_out_within or can_roll_back",
            id="empty-when",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n"
            "    when: {rolled_out_within: 30m, not_rolled_out_within: 30m}\n",
            "a.yaml:7: rule 'r': steps[0].when: rolled_out_within and not_rolled_out_within on "
            "one step can never both hold; put them on two steps (one for each case)",
            id="both-ways",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n    when: {rolled_out_within: 30}\n",
            "a.yaml:7: rule 'r': steps[0].when.rolled_out_within: ",
            id="bare-number",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n    when: {rolled_out_in: 30m}\n",
            "a.yaml:7: rule 'r': steps[0].when: unknown field 'rolled_out_in' "
            "(did you mean 'rolled_out_within'?)",
            id="typo",
        ),
        pytest.param(
            'target: {kind: StatefulSet, namespace: ns, name: "{{ labels.d }}"}\n'
            "steps:\n  - action: test.restart\n    when: {rolled_out_within: 30m}\n",
            "a.yaml:7: rule 'r': when.rolled_out_within reads a Deployment's rollout history; "
            "the target is a StatefulSet",
            id="not-a-deployment",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\non_failed: [{action: test.restart}]\n",
            "a.yaml:6: rule 'r': on_failed runs when verification fails; add `verify: "
            "{resolved_within: ...}`",
            id="on-failed-without-verify",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nverify: {resolved_within: 5m}\n"
            "on_failed:\n  - action: test.restart\n    when: {rolled_out_within: 5m}\n",
            "a.yaml:9: rule 'r': on_failed steps take no `when`: they run whenever "
            "verification fails",
            id="on-failed-when",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nverify: {resolved_within: 5m, settle: 0s}\n",
            "a.yaml:6: rule 'r': verify.settle: '0s' is not a positive duration",
            id="settle-zero",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nnotify: {channel: On-Call}\n",
            "a.yaml:6: rule 'r': notify.channel: 'On-Call' is not a channel name",
            id="channel-name",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nnotify: {channel: oncall, events: [done]}\n",
            "a.yaml:6: rule 'r': notify.events[0]: Input should be 'started', 'refused', "
            "'awaiting_approval', 'finished', 'verification_failed' or 'undo_failed'",
            id="unknown-moment",
        ),
    ],
)
def test_errors_name_the_line_and_the_fix(body: str, expected: str) -> None:
    errors = errors_of({"a.yaml": one_rule(body)})
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors[0]


def test_live_conditions_alone_are_enough_for_a_first_alert() -> None:
    # Unlike `repeated: {times: 2}`, a live condition may hold on the very first alert.
    body = TARGET + "steps:\n  - action: test.undo\n    when: {rolled_out_within: 1h}\n"
    assert errors_of({"a.yaml": one_rule(body)}) == []
