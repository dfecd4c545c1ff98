"""make bench's matched intake rounds: each round's ratio is to the ceiling of the same turn,
the figure is their median, and a drain left unfinished is said."""

from __future__ import annotations

from bench.intake_matched import MatchedRound, matched_summary
from bench.loads import CpuShare, Figures


def turn(
    ceiling: float,
    matched: float,
    *,
    p99_ms: float = 10.0,
    left: int = 0,
    drained: float | None = 900.0,
) -> MatchedRound:
    """A round whose receiver sent 1,000 notifications at ``matched``/s."""
    figures = Figures(1000, 1000 / matched, [p99_ms] * 100, errors=1)
    return MatchedRound(ceiling, figures, CpuShare(300.0, 200.0, 100.0, idle=0.25), drained, left)


def test_each_round_is_divided_by_its_own_turn_of_the_ceiling() -> None:
    # Medians taken apart would give 1,500/4,000 = 0.375x; the turns give 0.5, 0.5, 0.5.
    turns = [turn(2000, 1000), turn(4000, 2000), turn(6000, 3000)]
    line = matched_summary(turns, 120)
    assert "0.500x (target >= 0.45x: met; rounds 0.50, 0.50, 0.50" in line
    assert "1000, 2000, 3000 notifications/s" in line
    assert "errors 3" in line
    assert "the cores idle 25% meanwhile" in line
    assert "still queued" not in line


def test_the_median_round_gives_the_p99_and_a_low_median_is_not_met() -> None:
    turns = [turn(5000, 1000, p99_ms=5), turn(5000, 2000, p99_ms=7), turn(5000, 3000, p99_ms=9)]
    line = matched_summary(turns, 120)
    assert "0.400x (target >= 0.45x: not met" in line
    assert "p99 7.0 ms" in line


def test_a_drain_that_did_not_finish_is_said() -> None:
    line = matched_summary([turn(5000, 2500, left=42)], 30)
    assert "(42 still queued after 30 s)" in line


def test_a_worker_that_kept_up_is_said_not_read_as_a_stall() -> None:
    kept_up = [turn(5000, 2500, drained=None), turn(5000, 2500, drained=None)]
    assert "the worker kept up: nothing was queued after any loop" in matched_summary(kept_up, 30)
    mixed = [turn(5000, 2500, drained=None), turn(5000, 2500, drained=800.0)]
    line = matched_summary(mixed, 30)
    assert "the worker then settled 800 events/s (nothing was queued after 1 of the loops)" in line
    assert "settled 0 events/s" not in line
