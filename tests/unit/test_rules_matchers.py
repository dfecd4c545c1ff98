"""`match` items in rule files: lists of matchers in either Alertmanager grammar, UTF-8 label
names end to end (matching and targets), and the lint warnings Alertmanager's fallback mode
would log, at the item's file and line."""

from __future__ import annotations

import textwrap

import pytest

from receiver.rules.compile import check_files, compile_files
from receiver.rules.errors import RuleError, RuleSetError
from remediations.targets import Target
from tests.support.rules import POLICY, TARGET, errors_of, registry


def _rules(match_block: str, target: str = TARGET) -> str:
    """One rule `r` whose `match:` is the given block (its first item on line 4)."""
    return (
        "rules:\n  - name: r\n    match:\n"
        + textwrap.indent(textwrap.dedent(match_block), "      ")
        + "    "
        + target
        + "    steps: [{action: test.restart}]\n"
    )


class TestItemsAreLists:
    """An item is what Alertmanager's `matchers:` item is: a list (case 01's kind)."""

    def test_comma_separated_matchers_in_one_item_all_apply(self) -> None:
        ruleset = compile_files(
            {"a.yaml": _rules("- 'alertname=DiskFull, team=storage'\n")}, registry(), POLICY
        )
        (rule,) = ruleset.rules
        assert [str(m) for m in rule.matchers] == ['alertname="DiskFull"', 'team="storage"']
        labels = {"alertname": "DiskFull", "team": "storage", "namespace": "n", "d": "x"}
        assert ruleset.matching(labels) == [rule]
        assert ruleset.matching({**labels, "team": "web"}) == []

    @pytest.mark.parametrize(
        "item",
        [
            "- 'team=storage,'",
            "- '{team=\"storage\", }'",
            "- '{team = storage}'",
            "- ' team=storage , '",
        ],
    )
    def test_trailing_comma_and_braces(self, item: str) -> None:
        ruleset = compile_files(
            {"a.yaml": _rules(f"- alertname=DiskFull\n{item}\n")}, registry(), POLICY
        )
        (rule,) = ruleset.rules
        assert [str(m) for m in rule.matchers] == ['alertname="DiskFull"', 'team="storage"']
        assert ruleset.matching({"alertname": "DiskFull", "team": "storage"}) == [rule]

    def test_a_comma_inside_quotes_is_part_of_the_value(self) -> None:
        ruleset = compile_files(
            {"a.yaml": _rules("- 'alertname=DiskFull, summary=\"full, again\"'\n")},
            registry(),
            POLICY,
        )
        assert [m.value for m in ruleset.rules[0].matchers] == ["DiskFull", "full, again"]

    @pytest.mark.parametrize("item", ["''", "'{}'", "' '"])
    def test_an_item_without_matchers_is_an_error(self, item: str) -> None:
        # Alertmanager would read it as "no matcher": the rule would match every alert.
        errors = errors_of({"a.yaml": _rules(f"- alertname=DiskFull\n- {item}\n")})
        assert len(errors) == 1
        assert errors[0].startswith("a.yaml:5: rule 'r': match[1]: ")
        assert "holds no matcher" in errors[0]

    def test_an_item_neither_grammar_reads_is_an_error_with_both_messages(self) -> None:
        errors = errors_of({"a.yaml": _rules("- 'alertname=DiskFull,,team=storage'\n")})
        # It said "bad matcher format:  (...)", quoting the empty piece as nothing.
        assert errors == [
            "a.yaml:4: rule 'r': match[0]: an empty matcher between two commas at column 19"
            " (UTF-8 matcher parser: 19:20: unexpected ,: expected a matcher or close brace"
            " after comma)"
        ]


class TestUtf8LabelNames:
    """OpenTelemetry-style names in matchers and targets (case 03's kind)."""

    RULE = _rules(
        """\
        - alertname=PodOOM
        - '{"cloud.region"="eu-west"}'
        - host.name=~"db-.*"
        """,
        target=(
            'target: {kind: Deployment, namespace: "{{ labels.k8s.namespace.name }}", '
            "name: \"{{ labels['k8s.statefulset.name'] }}\"}\n"
        ),
    )

    def test_matched_and_targeted(self) -> None:
        ruleset = compile_files({"a.yaml": self.RULE}, registry(), POLICY)
        assert ruleset.warnings == ()
        labels = {
            "alertname": "PodOOM",
            "cloud.region": "eu-west",
            "host.name": "db-7",
            "k8s.namespace.name": "billing",
            "k8s.statefulset.name": "ledger",
        }
        (rule,) = ruleset.matching(labels)
        assert rule.render_target(labels, {}, POLICY) == Target("Deployment", "billing", "ledger")
        assert ruleset.matching({**labels, "host.name": "web-1"}) == []
        assert ruleset.matching({k: v for k, v in labels.items() if k != "cloud.region"}) == []


class TestWarnings:
    """Alertmanager's fallback mode logs these; lint reports them as warnings at file:line."""

    def test_incompatible_with_the_utf8_parser(self) -> None:
        text = _rules("- alertname=DiskFull\n- 'path=~/var/\\d+'\n")
        errors, warnings = check_files({"a.yaml": text}, registry(), POLICY)
        assert errors == []
        (warning,) = warnings
        assert warning.warning
        assert (warning.file, warning.line) == ("a.yaml", 5)
        assert str(warning).startswith("a.yaml:5: warning: rule 'r': match[1]: 'path=~/var/\\d+' ")
        assert "classic matcher parser only" in warning.message
        assert "'path=~\"/var/\\\\d+\"'" in warning.message  # the fix, ready to paste

    def test_read_differently_by_the_two_grammars(self) -> None:
        text = _rules('- alertname=DiskFull\n- owner="a\\tb"\n- team=storage\n')
        ruleset = compile_files({"a.yaml": text}, registry(), POLICY)
        (warning,) = ruleset.warnings
        assert warning.line == 5
        assert "read differently" in warning.message
        # Alertmanager keeps the classic reading (a backslash and a t), and so does the rule.
        assert ruleset.rules[0].matchers[1].value == "a\\tb"

    def test_a_regex_that_escapes_the_anchors(self) -> None:
        text = _rules("- alertname=DiskFull\n- 'team=~\"db)|(web\"'\n")
        (warning,) = compile_files({"a.yaml": text}, registry(), POLICY).warnings
        assert warning.line == 5
        assert "not anchored at both ends" in warning.message

    @pytest.mark.parametrize(
        ("item", "verdict"),
        [
            ('\'""="web-1"\'', "never matches"),
            ('\'{""=~"web-.+"}\'', "never matches"),
            ('\'""!="web-1"\'', "matches every alert"),
        ],
    )
    def test_a_matcher_on_a_label_without_a_name(self, item: str, verdict: str) -> None:
        # Intake refuses such a label (receiver.alertmanager.Alert), so the rule could never
        # see one; Alertmanager's parsers accept the matcher, and the rule loaded silently
        # (case 01's kind: a rule that can never match, and nothing says so).
        text = _rules(f"- alertname=DiskFull\n- {item}\n")
        (warning,) = compile_files({"a.yaml": text}, registry(), POLICY).warnings
        assert warning.line == 5
        assert "a label without a name" in warning.message
        assert verdict in warning.message

    def test_clean_rules_have_no_warnings(self) -> None:
        text = _rules('- alertname=DiskFull\n- \'team=~"db|web", path=~"/var/\\\\d+"\'\n')
        assert compile_files({"a.yaml": text}, registry(), POLICY).warnings == ()

    def test_warnings_come_with_errors_too(self) -> None:
        warned = _rules("- alertname=DiskFull\n- 'path=~/var/\\d+'\n")
        broken = _rules("- alertname=DiskFull\n").replace("name: r", "name: s") + "    bogus: 1\n"
        with pytest.raises(RuleSetError) as caught:
            compile_files({"a.yaml": warned, "b.yaml": broken}, registry(), POLICY)
        assert [(e.file, e.line) for e in caught.value.errors] == [("b.yaml", 7)]
        assert [(w.file, w.line) for w in caught.value.warnings] == [("a.yaml", 5)]

    def test_str_of_a_warning(self) -> None:
        assert str(RuleError("f.yaml", 3, "hm", warning=True)) == "f.yaml:3: warning: hm"
        assert str(RuleError("f.yaml", 3, "bad")) == "f.yaml:3: bad"
