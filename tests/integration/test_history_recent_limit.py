"""The history read takes, of a (rule, target) pair, the earlier runs its rule can count, not
every run of the window (issue 12; migration 0037).

A flapping alert (a storm on few targets) gives each target a run per alert: read up to the
read's limit, each event read every run of its target in the hour, more with every alert. The
engine counts earlier occurrences up to the rule's highest ``repeated.times``
(``receiver.repetitions``), so the read takes that many and one (the event's own occurrence's
run may be among them): the rows read follow the rule, not the storm. The plans made on the
short read are the plans made on the long one, on a real PostgreSQL, for random stores.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random

import pytest

from receiver.engine import plan, recent_limit, repeat_keys
from receiver.model import AlertEvent, NamespacePolicy, Target
from receiver.rules.compile import compile_files
from receiver.store import Store
from receiver.store.history import (
    HISTORY_PLAN_SETTINGS,
    HISTORY_SQL,
    batch_arguments,
    history_arguments,
)
from tests.support.events import alert_event
from tests.support.plans import explain_analyze, rows_read
from tests.support.rules import registry

pytestmark = pytest.mark.postgres

POLICY = NamespacePolicy()
RULES = compile_files(
    {
        "rules.yaml": """\
rules:
  - name: restart
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: shop, name: "{{ labels.deployment }}"}
    steps:
      - action: test.restart
      - action: test.undo
        when: {repeated: {times: 3, within: 1h}}
  - name: grow
    match: ['alertname="HighMemoryUsage"', 'severity="critical"']
    target: {kind: Deployment, namespace: shop, name: "{{ labels.deployment }}"}
    steps:
      - action: test.restart
      - action: test.undo
        when: {repeated: {times: 2, within: 10m}}
      - action: test.undo
        when: {repeated: {times: 5, within: 1h}}
"""
    },
    registry(),
    POLICY,
)
WITHIN_S = 3600.0


def _alert(event_id: int, n: int, deployment: str, *, critical: bool = False) -> AlertEvent:
    """Alert ``n`` (its own occurrence) of ``deployment``, as event ``event_id``."""
    labels = {
        "alertname": "HighMemoryUsage",
        "deployment": deployment,
        **({"severity": "critical"} if critical else {}),
    }
    return alert_event(event_id, fingerprint=f"{n:016x}", labels=labels)


async def _runs(store: Store, alerts: list[AlertEvent]) -> None:
    """The run of each of ``alerts`` for each rule it matches, one after another (so created
    in their order)."""
    for alert in alerts:
        for rule, target in repeat_keys(alert, RULES, POLICY):
            await store.create_run(rule=rule, event=alert, target=target, dry_run=True)


async def test_a_read_takes_the_runs_its_rule_counts_not_the_storms(store: Store) -> None:
    # 120 alerts of one target in the hour: the read of the 121st takes 4 of its runs (the
    # rule counts 3 earlier occurrences, and room for the event's own run).
    await _runs(store, [_alert(i, i, "web-0") for i in range(1, 121)])
    event = _alert(121, 121, "web-0")
    recent = recent_limit(event, RULES)
    assert recent == 4
    pairs = repeat_keys(event, RULES, POLICY)
    args = batch_arguments([history_arguments(event, WITHIN_S, pairs, [], 1000, recent)])
    async with store._pool.acquire() as conn, conn.transaction():
        await conn.execute(HISTORY_PLAN_SETTINGS)
        explained = await explain_analyze(conn, HISTORY_SQL, *args)
    # Every run of web-0 in the window (120) before migration 0037.
    assert rows_read(explained, "runs") <= recent, json.dumps(explained, indent=1)

    short = await store.history(event, WITHIN_S, repeats=pairs, recent=recent)
    assert [r.event_id for r in short.recent_runs] == [117, 118, 119, 120]
    full = await store.history(event, WITHIN_S, repeats=pairs)
    assert len(full.recent_runs) == 120
    now = dt.datetime.now(dt.UTC)
    assert plan(event, RULES, short, POLICY, now=now) == plan(event, RULES, full, POLICY, now=now)


async def test_a_retried_event_reads_past_the_runs_of_later_events(store: Store) -> None:
    # Event 50 taken up again after the 50 events that came after it made their runs (the
    # newest): its read leaves those out and still finds the newest it counts, its own run
    # among them, and plans as on every run.
    await _runs(store, [_alert(i, i, "web-0") for i in range(1, 101)])
    event = _alert(50, 50, "web-0")
    pairs = repeat_keys(event, RULES, POLICY)
    short = await store.history(event, WITHIN_S, repeats=pairs, recent=recent_limit(event, RULES))
    assert [r.event_id for r in short.recent_runs] == [47, 48, 49, 50]
    full = await store.history(event, WITHIN_S, repeats=pairs)
    now = dt.datetime.now(dt.UTC)
    assert plan(event, RULES, short, POLICY, now=now) == plan(event, RULES, full, POLICY, now=now)
    # Another occurrence as event 50 (its run not made yet): the run of event 50 is read and
    # not counted (not an earlier event's), the three before it are, and reach the cap.
    first = dataclasses.replace(event, fingerprint="f" * 16)
    short = await store.history(first, WITHIN_S, repeats=pairs, recent=recent_limit(first, RULES))
    assert [r.event_id for r in short.recent_runs] == [47, 48, 49, 50]
    (run,) = plan(first, RULES, short, POLICY, now=now).runs
    assert run.occurrence == 4
    assert run.steps[1].description == "repeated 3 within 1h: this is occurrence 4 or later, holds"


SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
async def test_the_short_read_plans_what_the_long_one_plans(store: Store, seed: int) -> None:
    # Random stores: alerts of three targets, some critical (both rules), at random ages in
    # and out of the windows (several sharing an instant), read for random events among them
    # (later events' runs in the store) and for new ones.
    rng = random.Random(seed)
    alerts = [
        _alert(i, i, f"web-{rng.randrange(3)}", critical=rng.random() < 0.4)
        for i in range(1, rng.randrange(10, 60))
    ]
    await _runs(store, alerts)
    async with store._pool.acquire() as conn:
        ages = [rng.choice([0, 0, 30, 300, 700, 1800, 3599, 4000]) for _ in alerts]
        await conn.execute(
            """UPDATE runs SET created_at = now() - make_interval(secs => ages.age)
               FROM unnest($1::bigint[], $2::float8[]) AS ages(event_id, age)
               WHERE runs.event_id = ages.event_id""",
            [a.id for a in alerts],
            [float(a) for a in ages],
        )
    now = dt.datetime.now(dt.UTC)
    reads = rng.sample(alerts, min(8, len(alerts))) + [
        _alert(1000 + n, 1000 + n, f"web-{n % 3}", critical=n % 2 == 0) for n in range(4)
    ]
    occurrences: set[int] = set()
    for event in reads:
        event = dataclasses.replace(event, received_at=now)
        pairs = repeat_keys(event, RULES, POLICY)
        recent = recent_limit(event, RULES)
        short = await store.history(event, WITHIN_S, repeats=pairs, recent=recent)
        full = await store.history(event, WITHIN_S, repeats=pairs)
        planned = plan(event, RULES, short, POLICY, now=now)
        assert planned == plan(event, RULES, full, POLICY, now=now), (seed, event.id)
        occurrences |= {run.occurrence for run in planned.runs}
    # The reads reach counts under the rules' thresholds and past them (below).
    REACHED.update(occurrences)


REACHED: set[int] = set()


def test_the_random_stores_reach_counts_under_and_past_the_thresholds() -> None:
    """Run after the seeds above (file order): their plans counted under each threshold and
    past the highest (restart's 4 and grow's 6, said "or later")."""
    assert {2, 3, 4, 5, 6} <= REACHED, REACHED


def test_the_rules_are_the_tests_targets() -> None:
    assert repeat_keys(_alert(1, 1, "web-0", critical=True), RULES, POLICY) == [
        ("restart", Target("Deployment", "shop", "web-0")),
        ("grow", Target("Deployment", "shop", "web-0")),
    ]
