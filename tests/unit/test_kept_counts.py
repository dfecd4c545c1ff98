"""The other worker processes' counts kept between scrapes (receiver/metrics_merge.py,
``KeptCounts``): a sum that never steps back when a process misses a scrape or is replaced."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from receiver.metrics_merge import KeptCounts, Reading, merged


def _exposition(refused: float, verified: float = 0.0) -> bytes:
    """A worker process's exposition with runs of rule r by outcome."""
    registry = CollectorRegistry()
    runs = Counter("remediator_runs", "Runs.", ["rule", "outcome"], registry=registry)
    if refused:
        runs.labels("r", "refused").inc(refused)
    if verified:
        runs.labels("r", "verified").inc(verified)
    return generate_latest(registry)


def _reading(index: int, pid: int, text: bytes | None) -> Reading:
    return Reading(index, pid, text, f"process-{index}")


def _sum(kept: KeptCounts, outcome: str = "refused") -> float:
    text = merged(CollectorRegistry(), kept.families()).decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "remediator_runs_total" and s.labels.get("outcome") == outcome
    )


def test_a_process_that_does_not_answer_counts_with_what_it_said_last() -> None:
    kept = KeptCounts()
    assert kept.update([_reading(1, 100, _exposition(5, 2)), _reading(2, 200, _exposition(7))]) == (
        2,
        [],
    )
    assert _sum(kept) == 12
    assert kept.update([_reading(1, 100, None), _reading(2, 200, _exposition(9))]) == (1, [])
    assert (_sum(kept), _sum(kept, "verified")) == (14, 2)  # 5 kept + 9; its verified kept too


def test_a_replaced_process_adds_to_what_its_predecessor_said_last() -> None:
    kept = KeptCounts()
    kept.update([_reading(1, 100, _exposition(40))])
    # Killed and started again: a new pid at index 1, counting from zero.
    kept.update([_reading(1, 101, None)])
    assert _sum(kept) == 40
    kept.update([_reading(1, 101, _exposition(3))])
    assert _sum(kept) == 43
    kept.update([_reading(1, 102, _exposition(1))])  # and again
    assert _sum(kept) == 44


def test_a_text_that_does_not_parse_is_a_problem_named_and_the_last_one_counts() -> None:
    kept = KeptCounts()
    kept.update([_reading(1, 100, _exposition(6))])
    answered, problems = kept.update([_reading(1, 100, b"remediator_runs_total{")])
    assert answered == 0
    assert len(problems) == 1
    assert problems[0].startswith("process-1: ")  # named as the reading names it
    assert _sum(kept) == 6


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 2),  # which process
            st.sampled_from(["count", "miss", "restart"]),
            st.integers(0, 5),  # how many more runs before this scrape
        ),
        max_size=30,
    )
)
def test_the_sum_never_steps_back(steps: list[tuple[int, str, int]]) -> None:
    kept = KeptCounts()
    pid = {1: 100, 2: 200}
    count = {1: 0, 2: 0}
    last = 0.0
    for index, what, more in steps:
        if what == "restart":
            pid[index] += 1
            count[index] = 0
        count[index] += more
        text = None if what == "miss" else _exposition(count[index])
        kept.update([_reading(index, pid[index], text)])
        now = _sum(kept)
        assert now >= last
        last = now
