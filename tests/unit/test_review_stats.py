"""Percentiles and effectiveness per rule (pure), and how outcomes read."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.review.outcomes import approval_bucket, category, present
from receiver.review.stats import effectiveness, percentile, ttr_summary
from tests.unit.review_records import approval, run


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.0) == 1.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 1.0) == 4.0
    assert percentile([95.0, 215.0], 0.9) == pytest.approx(203.0)
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile([1.0], 1.5)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=60))
def test_percentiles_agree_with_the_standard_library(values: list[float]) -> None:
    # statistics.quantiles' "inclusive" method is the same linear interpolation.
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    for k in range(1, 10):
        assert percentile(values, k / 10) == pytest.approx(deciles[k - 1], rel=1e-9, abs=1e-6)
    assert percentile(values, 0.5) == pytest.approx(statistics.median(values))


def test_effectiveness_counts_what_acted_and_what_was_not_done() -> None:
    runs = [
        run(0, outcome="resolved", ttr=60.0, approvals=[approval("approved")]),
        run(1, outcome="verified", ttr=120.0),  # a newer version's name of the same
        run(2, outcome="failed", ttr=600.0),  # resolved later, after the deadline
        run(3, outcome="failed"),
        run(4, outcome="refused", refusal="cooldown"),
        run(5, outcome="refused", refusal="rate"),
        run(6, outcome="refused", refusal="rate"),
        run(7, outcome="rejected", approvals=[approval("rejected")]),
        run(8, outcome="expired", approvals=[approval("superseded"), approval("expired")]),
        run(9, outcome="dry_run", ttr=5.0),  # changed nothing: not in the times
        run(10, outcome="rolled_back"),  # an outcome this version does not know
        run(11, outcome="verifying"),
        run(12, rule="other", outcome="succeeded", ttr=30.0),
    ]
    other, restart = effectiveness(runs)
    assert restart.as_dict() == {
        "rule": "restart",
        "runs": 12,
        "acted": 4,
        "verified": 2,
        "failed": 2,
        "resolved_before_action": 0,
        "verified_pct": 50.0,
        "failed_pct": 50.0,
        "ttr_count": 3,
        "ttr_median_s": 120.0,
        "ttr_p90_s": pytest.approx(504.0),
        "outcomes": {
            "dry_run": 1,
            "expired": 1,
            "failed": 2,
            "in_progress": 1,
            "other": 1,
            "refused": 3,
            "rejected": 1,
            "verified": 2,
        },
        "refusals": {"cooldown": 1, "rate": 2},
        "approvals": {"expired": 1, "granted": 2, "rejected": 1},
    }
    assert (other.rule, other.acted, other.verified_pct, other.failed_pct) == ("other", 1, 0.0, 0.0)
    assert ttr_summary([run(0, outcome="refused", ttr=9.0)]) == {
        "count": 0,
        "median_s": None,
        "p90_s": None,
    }


def test_a_rule_whose_runs_never_acted_has_no_percentages() -> None:
    [row] = effectiveness([run(0, outcome="refused", refusal="pause")])
    assert (row.verified_pct, row.failed_pct, row.ttr_median_s) == (None, None, None)


def test_outcomes_read_as_what_they_are_even_unknown_ones() -> None:
    assert category("resolved") == category("verified") == "verified"
    shown = present("rolled_back")
    assert (shown.category, shown.label, shown.words, shown.tone) == (
        "other",
        "rolled back",
        "rolled back",
        "neutral",
    )
    assert present("awaiting_approval").words == "in progress (awaiting approval)"
    assert present("failed").tone == "bad"
    assert present("").label == "unknown"
    assert approval_bucket("superseded") == "granted"
    assert approval_bucket("sideways") == "other"


EARLY = "resolved_before_action"


def test_a_run_resolved_before_its_steps_acted_is_counted_apart() -> None:
    """Neither the rule's success nor its failure: in neither percentage, nor in the times."""
    runs = [
        run(0, outcome="verified", ttr=120.0),
        run(1, outcome="failed"),
        run(2, outcome="succeeded", ttr=0.0, verify_result=EARLY),
        run(3, outcome="succeeded", ttr=0.0, verify_result=EARLY),
    ]
    [row] = effectiveness(runs)
    assert (row.acted, row.verified, row.failed, row.resolved_before_action) == (2, 1, 1, 2)
    assert (row.verified_pct, row.failed_pct) == (50.0, 50.0)
    assert row.outcomes == {"failed": 1, EARLY: 2, "verified": 1}
    assert (row.ttr_count, row.ttr_median_s) == (1, 120.0)
    shown = present("succeeded", EARLY)
    assert (shown.category, shown.label, shown.tone) == (EARLY, "succeeded", "neutral")
    assert "resolved before the steps acted" in shown.words
    # Only a succeeded run: another outcome keeps its category whatever the result says.
    assert category("failed", EARLY) == "failed"
    assert category("succeeded", None) == category("succeeded", "verified") == "succeeded"


_OUTCOMES = st.sampled_from(["verified", "failed", "succeeded", "refused", "dry_run", "expired"])
_RESULTS = st.sampled_from([None, "verified", "not_resolved", "recurred", EARLY])


@given(st.lists(st.tuples(_OUTCOMES, _RESULTS), max_size=30), st.integers(0, 10))
def test_runs_resolved_before_action_never_change_the_rules_percentages(
    others: list[tuple[str, str | None]], early: int
) -> None:
    base = [run(i, outcome=o, verify_result=r) for i, (o, r) in enumerate(others)]
    added = [run(100 + i, outcome="succeeded", verify_result=EARLY) for i in range(early)]
    with_early = effectiveness(base + added)
    without = effectiveness(base)
    if not base:
        assert [r.resolved_before_action for r in with_early] == ([early] if early else [])
        return
    [a], [b] = with_early, without
    assert (a.verified_pct, a.failed_pct, a.acted) == (b.verified_pct, b.failed_pct, b.acted)
    assert a.resolved_before_action == b.resolved_before_action + early
