"""When a table's planner statistics are stale enough to analyse it now
(``receiver.store.statistics.stale``): it changed by at least ``MIN_CHANGES`` rows and by at
least ``CHANGE_RATIO`` times the rows it had when last analysed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from receiver.store.statistics import CHANGE_RATIO, MIN_CHANGES, TableChanges, stale

_rows = st.one_of(st.just(-1.0), st.floats(min_value=0, max_value=1e9, allow_nan=False))


@given(rows=_rows, changed=st.integers(min_value=0, max_value=MIN_CHANGES - 1))
def test_a_few_changes_never_call_for_an_analysis(rows: float, changed: int) -> None:
    assert not stale(TableChanges("t", rows, changed))


@given(changed=st.integers(min_value=MIN_CHANGES, max_value=10**10))
def test_a_table_never_analysed_or_analysed_empty_is_stale_once_it_has_grown(
    changed: int,
) -> None:
    assert stale(TableChanges("t", -1.0, changed))
    assert stale(TableChanges("t", 0.0, changed))


@given(rows=st.floats(min_value=0, max_value=1e9, allow_nan=False), more=st.integers(0, 10**6))
def test_more_changes_never_make_a_stale_table_fresh(rows: float, more: int) -> None:
    changed = max(MIN_CHANGES, int(rows * CHANGE_RATIO) + 1)
    assert stale(TableChanges("t", rows, changed))
    assert stale(TableChanges("t", rows, changed + more))


def test_a_million_rows_table_that_a_storm_changed_by_ten_thousand_is_left_alone() -> None:
    assert not stale(TableChanges("alert_events", 1_000_000.0, 30_000))
