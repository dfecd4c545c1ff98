"""The history read takes, of each (rule, target) pair, only the newest earlier runs the engine
can count (``engine.recent_limit``), and the plan made on them is the plan made on every run of
the window: the same steps, occurrence, explanations and skips, for any history.

The store's side of it (migration 0037) is held to what ``_read`` below does by
tests/integration/test_history_recent_limit.py, on a real PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from receiver.engine import plan, recent_limit, repeat_keys
from receiver.model import AlertEvent, History, PriorRun, RunOutcome, Status, Target
from receiver.rules.compile import compile_files
from receiver.rules.model import RuleSet
from tests.support.engine_cases import NOW, POLICY, RULES, STARTS, WEB, event
from tests.support.rules import registry

# The engine tests' rules (tests/support/engine_cases.py; memory: times 2 within 1h, 3 within
# 1d) and one more on the same alert and target that counts further (6 within 2h): a read
# serves both pairs.
DEEP = """\
  - name: memory-deep
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.restart
      - action: test.undo
        when: {repeated: {times: 6, within: 2h}}
"""
DEEP_RULES = compile_files({"rules.yaml": RULES + DEEP}, registry(), POLICY)
OTHER = Target("Deployment", "shop", "cart")


@st.composite
def _histories(draw: st.DrawFn) -> tuple[AlertEvent, History]:
    """An event (id 7) and the runs of the window of its pairs and a few others: of earlier
    and later events (event_id), of unknown events, at most one of the event's own occurrence
    a rule (the store's UNIQUE (rule, occurrence)), created before the event or after it."""
    received = draw(st.sampled_from([None, NOW - timedelta(minutes=10)]))
    alert = dataclasses.replace(event(), received_at=received)
    runs: list[PriorRun] = []
    for n in range(draw(st.integers(0, 24))):
        runs.append(
            PriorRun(
                run_id=f"r{n:02d}",
                rule=draw(st.sampled_from(["memory", "memory-deep", "queue"])),
                target=draw(st.sampled_from([WEB, WEB, OTHER])),
                fingerprint=f"fp-{n}",
                starts_at="2024-05-01T10:00:00Z",
                # A few share their instant (a group commit): the read orders them by id.
                created_at=NOW
                + timedelta(seconds=draw(st.sampled_from([-7200, -3600, -60, 0]) | _ages)),
                outcome=draw(st.sampled_from(list(RunOutcome))),
                # Another event's (a run's event is of the run's occurrence).
                event_id=draw(st.none() | st.integers(1, 14).filter(lambda i: i != alert.id)),
            )
        )
    for rule in draw(st.sets(st.sampled_from(["memory", "memory-deep"]))):
        runs.append(
            PriorRun(
                run_id=f"own-{rule}",
                rule=rule,
                target=WEB,
                fingerprint=alert.fingerprint,
                starts_at=STARTS,
                refire=alert.refire,
                created_at=NOW - timedelta(seconds=draw(_ages)),
                outcome=RunOutcome.PENDING,
                event_id=draw(st.none() | st.just(alert.id)),
            )
        )
    return alert, History(recent_runs=tuple(runs))


_ages = st.integers(min_value=-2 * 86400, max_value=60)


def _read(alert: AlertEvent, rules: RuleSet, history: History, recent: int) -> History:
    """``recent_runs`` as the store's read returns them: of each ``repeat_keys`` pair, its runs
    in the rules' widest window before the event's arrival (or later), none of a later event,
    the newest ``recent`` (by created_at, then id), oldest first."""
    widest = rules.widest_window_s or 0.0
    since = (alert.received_at or NOW) - timedelta(seconds=widest)
    read: list[PriorRun] = []
    for rule, target in set(repeat_keys(alert, rules, POLICY)):
        pair = [
            run
            for run in history.recent_runs
            if run.rule == rule
            and run.target == target
            and run.created_at >= since
            and (run.event_id is None or run.event_id <= alert.id)
        ]
        pair.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        read += pair[:recent]
    read.sort(key=lambda r: (r.created_at, r.run_id))
    return dataclasses.replace(history, recent_runs=tuple(read))


ONLY_MEMORY = compile_files({"rules.yaml": RULES}, registry(), POLICY)


@given(_histories(), st.sampled_from([DEEP_RULES, ONLY_MEMORY]))
def test_the_newest_runs_the_rules_count_plan_what_every_run_plans(
    case: tuple[AlertEvent, History], rules: RuleSet
) -> None:
    alert, history = case
    every = _read(alert, rules, history, 1000)
    limit = recent_limit(alert, rules)
    assert plan(alert, rules, _read(alert, rules, history, limit), POLICY, now=NOW) == plan(
        alert, rules, every, POLICY, now=NOW
    )


def test_a_count_past_the_rules_highest_times_is_said_as_such() -> None:
    # Five earlier occurrences in the hour: memory counts three of them (its highest times),
    # and says the count reached it; memory-deep counts all five.
    runs = tuple(
        PriorRun(
            run_id=f"r{n}",
            rule=rule,
            target=WEB,
            fingerprint=f"fp-{n}",
            starts_at="2024-05-01T10:00:00Z",
            created_at=NOW - timedelta(minutes=n + 1),
            outcome=RunOutcome.REFUSED,
        )
        for n in range(5)
        for rule in ("memory", "memory-deep")
    )
    result = plan(event(), DEEP_RULES, History(recent_runs=runs), POLICY, now=NOW)
    by_rule = {run.rule: run for run in result.runs}
    memory = by_rule["memory"]
    assert memory.occurrence == 4
    assert [s.description for s in memory.steps[1:]] == [
        "repeated 2 within 1h: this is occurrence 4 or later, holds",
        "repeated 3 within 1d: this is occurrence 4 or later, holds",
    ]
    assert memory.decision is not None
    assert memory.decision["occurrence"] == 4
    assert memory.decision["occurrence_capped"] is True
    deep = by_rule["memory-deep"]
    assert deep.occurrence == 6
    # Six is exact for memory-deep (five earlier, its highest times is six): no mark.
    assert deep.decision is not None
    assert "occurrence_capped" not in deep.decision
    assert memory.occurrence_capped
    assert not deep.occurrence_capped
    assert [s.description for s in deep.steps[1:]] == [
        "repeated 6 within 2h: this is occurrence 6, holds"
    ]


def test_a_read_takes_the_highest_times_of_the_rules_and_room_for_the_own_run() -> None:
    assert recent_limit(event(), ONLY_MEMORY) == 3 + 1
    assert recent_limit(event(), DEEP_RULES) == 6 + 1


def test_a_resolved_event_reads_no_earlier_runs() -> None:
    resolved = dataclasses.replace(event(), status=Status.RESOLVED)
    assert recent_limit(resolved, DEEP_RULES) == 0
    unmatched = event({"alertname": "Other"})
    assert recent_limit(unmatched, DEEP_RULES) == 0
