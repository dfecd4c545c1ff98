"""Effectiveness per rule, and the percentiles it needs, from plain records.

For each rule, over the runs of a window:

- ``runs``: all of them; ``outcomes``: how many ended in each category
  (``receiver.review.outcomes``);
- ``verified_pct``, ``failed_pct``: verified and failed runs as a percentage of the runs whose
  steps ran (verified + failed + succeeded): a refused, dry-run or unapproved run did nothing
  that says whether the rule works. None when no run acted;
- ``resolved_before_action``: runs whose alert resolved before their first step acted
  (``succeeded``, verify_result ``resolved_before_action``): counted apart, in neither
  percentage, as neither a success nor a failure of the rule;
- ``ttr_median_s``, ``ttr_p90_s``: the median and 90th percentile of the time to resolve
  (seconds from the run's creation to its alert's resolution) of the runs that acted and whose
  alert resolved; None without any;
- ``refusals``: guard refusals of its runs, by guard;
- ``approvals``: its approvals by what came of them (granted, rejected, expired, cancelled,
  pending).

Percentiles interpolate linearly between the closest ranks, as PostgreSQL's
``percentile_cont`` and numpy's default do: with sorted values v[0..n-1], the p-th is at
position p * (n - 1).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from receiver.review.model import Run
from receiver.review.outcomes import ACTED, approval_bucket, category

__all__ = ["RuleStats", "effectiveness", "percentile", "ttr_summary"]


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0 <= p <= 1) of ``values``, interpolated (module docstring);
    None for no values. ValueError for p outside [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError("a percentile is between 0 and 1")
    ordered = sorted(values)
    if not ordered:
        return None
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def ttr_summary(runs: Iterable[Run]) -> dict[str, float | int | None]:
    """``{count, median_s, p90_s}`` of the times to resolve of the runs that acted."""
    times = [
        r.time_to_resolve_s
        for r in runs
        if r.time_to_resolve_s is not None and category(r.outcome, r.verify_result) in ACTED
    ]
    return {
        "count": len(times),
        "median_s": percentile(times, 0.5),
        "p90_s": percentile(times, 0.9),
    }


@dataclass(frozen=True, slots=True)
class RuleStats:
    """One row of the effectiveness table (see the module docstring for each field)."""

    rule: str
    runs: int
    acted: int
    verified: int
    failed: int
    resolved_before_action: int
    verified_pct: float | None
    failed_pct: float | None
    ttr_count: int
    ttr_median_s: float | None
    ttr_p90_s: float | None
    outcomes: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    approvals: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "runs": self.runs,
            "acted": self.acted,
            "verified": self.verified,
            "failed": self.failed,
            "resolved_before_action": self.resolved_before_action,
            "verified_pct": self.verified_pct,
            "failed_pct": self.failed_pct,
            "ttr_count": self.ttr_count,
            "ttr_median_s": self.ttr_median_s,
            "ttr_p90_s": self.ttr_p90_s,
            "outcomes": dict(self.outcomes),
            "refusals": dict(self.refusals),
            "approvals": dict(self.approvals),
        }


def _pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 1)


def effectiveness(runs: Iterable[Run]) -> list[RuleStats]:
    """One row per rule that has runs among ``runs``, sorted by rule name."""
    by_rule: dict[str, list[Run]] = {}
    for run in runs:
        by_rule.setdefault(run.rule, []).append(run)
    rows = []
    for rule in sorted(by_rule):
        of_rule = by_rule[rule]
        outcomes = Counter(category(r.outcome, r.verify_result) for r in of_rule)
        acted = sum(outcomes[c] for c in ACTED)
        ttr = ttr_summary(of_rule)
        refusals = Counter(r.refusal_guard for r in of_rule if r.refusal_guard)
        approvals = Counter(approval_bucket(a.state) for r in of_rule for a in r.approvals)
        rows.append(
            RuleStats(
                rule=rule,
                runs=len(of_rule),
                acted=acted,
                verified=outcomes["verified"],
                failed=outcomes["failed"],
                resolved_before_action=outcomes["resolved_before_action"],
                verified_pct=_pct(outcomes["verified"], acted),
                failed_pct=_pct(outcomes["failed"], acted),
                ttr_count=int(ttr["count"] or 0),
                ttr_median_s=ttr["median_s"],
                ttr_p90_s=ttr["p90_s"],
                outcomes=dict(sorted(outcomes.items())),
                refusals=dict(sorted(refusals.items())),
                approvals=dict(sorted(approvals.items())),
            )
        )
    return rows
