"""The storm round's unrelated alerts in parts (bench/storm_parts.py): each part runs from the
end of the one before, the first from the POST, and a missing time leaves its parts out of
their medians, not the alert out of the others."""

from __future__ import annotations

import math

from bench.storm_parts import NAMES, parts_line, parts_of


def test_each_part_runs_from_the_end_of_the_one_before() -> None:
    posted = {"a": 100.0}
    # intake's start, its commit, the claim, the claim's commit, the run's write (epoch s).
    rows = [("a", 100.010, 100.015, 100.040, 100.041, 100.060), ("other", 1, 2, 3, 4, 5)]
    (parts,) = parts_of(rows, posted, {"a": 100.020}, {"a": 70.0})
    assert [round(p, 3) for p in parts.parts] == [10.0, 5.0, 25.0, 1.0, 19.0, 10.0]
    assert round(sum(parts.parts), 3) == 70.0  # the parts add up to the POST-to-commit time
    assert round(parts.answered_ms, 3) == 20.0
    assert len(parts.parts) == len(NAMES)


def test_a_missing_time_is_left_out_of_its_parts_medians_only() -> None:
    posted = {"a": 0.0, "b": 0.0}
    rows = [("a", 0.001, 0.002, None, None, 0.010), ("b", 0.003, 0.004, 0.005, 0.006, 0.007)]
    parts = parts_of(rows, posted, {}, {"a": 12.0, "b": 9.0})
    a = next(p for p in parts if p.parts[0] == 1.0)
    assert [math.isnan(p) for p in a.parts[2:5]] == [True, True, True]
    line = parts_line("while posted", parts)
    # The nearest-rank median of a's and b's (1 and 3 ms) is 1; 'to the claim' is b's alone (1
    # ms), where a NaN counted would have made it NaN; 'to the run's write' b's 1 ms.
    assert line == (
        "  while posted, medians of each part (ms): to intake's transaction 1.0, its commit 1.0,"
        " to the claim 1.0, the claim's commit 1.0, to the run's write 1.0, the write to its"
        " commit 2.0; POST to intake's answer n/a"
    )
