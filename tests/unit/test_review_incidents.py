"""Grouping runs into incidents (pure): by alert group and gap, or by window; ids stable and
readable back."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from receiver.review.incidents import (
    GroupRef,
    WindowRef,
    chain_bounds,
    group_incidents,
    incident_key,
    key_hash,
    parse_id,
    stamp,
    window_incident,
)
from receiver.review.text import at_text
from tests.unit.review_records import KEY, at, event, run


def test_runs_of_one_group_close_together_are_one_incident() -> None:
    runs = [run(0), run(10), run(39)]
    [incident] = group_incidents(runs, [], gap_s=1800)
    assert [r.id for r in incident.runs] == [r.id for r in runs]
    assert (incident.started_at, incident.ended_at) == (at(0), at(39))
    assert incident.id == f"g-{stamp(at(0))}-{key_hash(KEY)}"
    assert incident.key == KEY


def test_a_gap_longer_than_the_setting_starts_a_new_incident() -> None:
    first, second = group_incidents([run(0), run(10), run(41)], [], gap_s=1800)
    assert len(first.runs) == 2
    assert len(second.runs) == 1
    assert second.id == f"g-{stamp(at(41))}-{key_hash(KEY)}"
    # Exactly the gap apart still joins.
    assert len(group_incidents([run(0), run(30)], [], gap_s=1800)) == 1


def test_an_alert_still_firing_keeps_its_incident_open() -> None:
    # The first run's alert resolved at minute 50: a run at 70 is within 30 minutes of it.
    [incident] = group_incidents([run(0, resolved=50), run(70)], [], gap_s=1800)
    assert incident.ended_at == at(70)
    assert len(incident.runs) == 2


def test_other_groups_are_other_incidents() -> None:
    other = '{}/{team="db"}:{alertname="DbDown"}'
    found = group_incidents([run(0), run(5, key=other), run(6)], [], gap_s=1800)
    assert sorted(len(i.runs) for i in found) == [1, 2]
    assert {i.key for i in found} == {KEY, other}


def test_a_run_without_a_group_key_is_grouped_by_its_alertname() -> None:
    found = group_incidents(
        [run(0, key="", alertname="A"), run(1, key="", alertname="A"), run(2, key="")],
        [],
        gap_s=1800,
    )
    assert sorted((i.key, len(i.runs)) for i in found) == [
        ("alertname=A", 2),
        ("alertname=WebDown", 1),
    ]
    assert incident_key("", "A") == "alertname=A"


def test_the_id_does_not_depend_on_the_order_the_data_came_in() -> None:
    runs = [run(m) for m in (0, 3, 7, 50, 55)]
    events = [event(2, skips=[("restart", "invalid target")]), event(52)]
    expected = [(i.id, [r.id for r in i.runs]) for i in group_incidents(runs, events, gap_s=1800)]
    for seed in range(5):
        shuffled = runs[:]
        random.Random(seed).shuffle(shuffled)
        got = [
            (i.id, [r.id for r in i.runs])
            for i in group_incidents(shuffled, events[::-1], gap_s=1800)
        ]
        assert got == expected


def test_skipped_rules_place_an_incident_and_unmatched_alerts_join_the_nearest() -> None:
    skipped = event(40, skips=[("restart", "invalid target: namespace denied")])
    near = event(65, reason="no rule matches")
    far = event(200, reason="no rule matches")
    first, second = group_incidents([run(0)], [skipped, near, far], gap_s=1800)
    assert first.unacted == ()
    # A skipped rule alone is an incident (what was NOT done), named by its first member.
    assert second.runs == ()
    assert second.id == f"g-{stamp(at(40))}-{key_hash(KEY)}"
    assert [e.event_id for e in second.unacted] == [skipped.event_id, near.event_id]
    assert second.ended_at == at(65)
    # An alert no rule matched, far from any incident, is in none.
    assert far.event_id not in {e.event_id for i in (first, second) for e in i.unacted}


def test_a_window_is_one_incident_of_everything_in_it() -> None:
    other = '{}/{team="db"}:{alertname="DbDown"}'
    runs = [run(-5), run(0), run(10, key=other), run(60)]
    events = [event(20, reason="no rule matches"), event(61)]
    incident = window_incident(runs, events, at(0), at(60))
    assert [r.id for r in incident.runs] == [runs[1].id, runs[2].id]
    assert [e.event_id for e in incident.unacted] == [events[0].event_id]
    assert incident.id == f"w-{stamp(at(0))}-{stamp(at(60))}"
    assert incident.window
    assert incident.key == ", ".join(sorted([KEY, other]))
    with pytest.raises(ValueError, match="end after it starts"):
        window_incident(runs, events, at(60), at(0))


def test_ids_read_back() -> None:
    [incident] = group_incidents([run(0.5)], [], gap_s=1800)
    assert parse_id(incident.id) == GroupRef(at(0.5), key_hash(KEY))
    assert parse_id(f"w-{stamp(at(0))}-{stamp(at(60))}") == WindowRef(at(0), at(60))
    bad = [
        "",
        "g-x-y",
        f"w-{stamp(at(60))}-{stamp(at(0))}",
        "g-20261399T000000000000Z-" + "a" * 12,
        "../../etc/passwd",
        f"g-{stamp(at(0))}-{key_hash(KEY)}x",
    ]
    for text in bad:
        assert parse_id(text) is None, text


def test_a_time_before_the_year_1000_is_written_with_four_digits() -> None:
    """strftime's %Y writes the year 1 as "1" on glibc: the window incident from year 1 (a
    ``from`` the review takes) was named ``w-10101T...``, and its page's link to its markdown,
    and the incidents page's link to it, were 404s. The time shown to people lost its digits
    too (``1-01-01 00:00:00 UTC``)."""
    early = datetime(1, 1, 1, tzinfo=UTC)
    assert stamp(early) == "00010101T000000000000Z"
    assert stamp(datetime(999, 12, 31, 23, 59, 59, 5, tzinfo=UTC)) == "09991231T235959000005Z"
    late = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_id(f"w-{stamp(early)}-{stamp(late)}") == WindowRef(early, late)
    assert at_text(early) == "0001-01-01 00:00:00 UTC"
    assert at_text(datetime(2026, 11, 25, 10, 0, 5, tzinfo=UTC)) == "2026-11-25 10:00:05 UTC"


def test_an_id_is_read_whole_and_in_ascii_digits() -> None:
    """`$` also matched before a trailing line break: "<id>\\n" read as the incident of <id>.
    Other scripts' digits are no id either."""
    [incident] = group_incidents([run(0.5)], [], gap_s=1800)
    window = f"w-{stamp(at(0))}-{stamp(at(60))}"
    arabic_indic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    foreign = f"g-{stamp(at(0.5)).translate(arabic_indic)}-{key_hash(KEY)}"
    assert incident.id == f"g-{stamp(at(0.5))}-{key_hash(KEY)}"
    for text in (incident.id + "\n", window + "\n", foreign):
        assert parse_id(text) is None, text


def test_chain_bounds_follow_the_chain_through_the_anchor() -> None:
    members = [(at(0), at(5)), (at(20), at(20)), (at(70), at(71)), (at(90), at(130))]
    assert chain_bounds(members, at(20), 1800) == (at(0), at(20))
    assert chain_bounds(members, at(90), 1800) == (at(70), at(130))
    assert chain_bounds(members, at(21), 1800) is None


def test_the_gap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        group_incidents([run(0)], [], gap_s=0)
