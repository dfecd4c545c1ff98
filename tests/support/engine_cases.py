"""The cases engine.plan() is tested on: a rule set, alert events and earlier runs as data, and
hypothesis strategies that draw them (mostly valid, some hostile).

Shared by tests/unit/test_engine_firing.py, test_engine_resolved.py and
test_engine_properties.py, and by test_occurrences.py and test_recent_limit.py, which
plan on the same rules. ``rules`` is a module-scoped fixture: a test module takes it up with
``rules = engine_cases.rules``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import strategies as st

from receiver.engine import plan
from receiver.model import (
    AlertEvent,
    History,
    NamespacePolicy,
    Plan,
    PriorRun,
    RunOutcome,
    Status,
    Target,
)
from receiver.rules.compile import compile_files
from receiver.rules.model import RuleSet
from tests.support.rules import registry

__all__ = [
    "ANNOTATIONS",
    "EVENTS",
    "HISTORIES",
    "HOSTILE",
    "LABELS",
    "LABEL_VALUES",
    "NOW",
    "NO_HISTORY",
    "POLICY",
    "PRIORS",
    "PROPERTY_RULES",
    "RULES",
    "STARTS",
    "TARGETS",
    "VALID",
    "WEB",
    "event",
    "prior",
    "resolved",
    "rules",
    "run_plan",
    "same_episode",
]


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLICY = NamespacePolicy(deny=("kube-system",))
STARTS = "2024-05-01T11:55:00.123456789Z"

RULES = """\
rules:
  - name: memory
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.restart
      - action: test.grow
        when: {repeated: {times: 2, within: 1h}}
        params: {container: app, factor: 1.5}
      - action: test.undo
        when: {repeated: {times: 3, within: 1d}}
    verify: {resolved_within: 10m}
    guards: {cooldown: 15m, max_runs: {count: 3, per: 1h}}
    on_resolved:
      - action: test.scale
        params: {restore: true, max: 5}
  - name: memory-critical
    match: ['alertname="HighMemoryUsage"', 'severity="critical"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ annotations.owner }}"}
    steps:
      - action: test.scale
        params: {delta: 1, max: 5}
        approval: required
  - name: queue
    match: ['alertname="QueueBacklog"']
    target: {kind: StatefulSet, namespace: "{{ labels.namespace }}", name: "workers"}
    steps:
      - action: test.scale
        params: {delta: 2, max: 10}
"""


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return compile_files({"rules.yaml": RULES}, registry(), POLICY)


def event(
    labels: dict[str, str] | None = None,
    *,
    status: Status = Status.FIRING,
    annotations: dict[str, str] | None = None,
    fingerprint: str = "fp1",
    starts_at: str = STARTS,
    refire: int = 0,
    received_at: datetime | None = None,
) -> AlertEvent:
    return AlertEvent(
        id=7,
        fingerprint=fingerprint,
        starts_at=starts_at,
        refire=refire,
        received_at=received_at,
        status=status,
        labels=(
            labels
            if labels is not None
            else {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
        ),
        annotations=annotations or {},
    )


WEB = Target("Deployment", "shop", "web")


def prior(
    rule: str = "memory",
    *,
    age: timedelta = timedelta(minutes=30),
    target: Target = WEB,
    closed: bool = False,
    run_id: str = "run-1",
    fingerprint: str | None = None,
    starts_at: str = "2024-05-01T10:00:00Z",
    refire: int = 0,
    event_id: int | None = None,
    changed: bool = True,
) -> PriorRun:
    # One run per (rule, occurrence): each prior run is its own earlier alert unless told.
    return PriorRun(
        run_id=run_id,
        rule=rule,
        target=target,
        fingerprint=fingerprint or f"fp0-{run_id}",
        starts_at=starts_at,
        created_at=NOW - age,
        outcome=RunOutcome.VERIFIED if closed else RunOutcome.VERIFYING,
        closed=closed,
        refire=refire,
        event_id=event_id,
        changed=changed,
    )


def same_episode(
    rule: str = "memory",
    *,
    run_id: str = "run-1",
    closed: bool = False,
    target: Target = WEB,
    fingerprint: str = "fp1",
    refire: int = 0,
    changed: bool = True,
    event_id: int | None = None,
) -> PriorRun:
    return prior(
        rule,
        run_id=run_id,
        closed=closed,
        target=target,
        fingerprint=fingerprint,
        starts_at=STARTS,
        refire=refire,
        changed=changed,
        event_id=event_id,
    )


NO_HISTORY = History()


def run_plan(rules: RuleSet, history: History = NO_HISTORY, **labels: str) -> Plan:
    base = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    return plan(event({**base, **labels}), rules, history, POLICY, now=NOW)


def resolved(rules: RuleSet, history: History) -> Plan:
    return plan(event(status=Status.RESOLVED), rules, history, POLICY, now=NOW)


HOSTILE = st.sampled_from(
    [
        "shop",
        "web",
        "kube-system",
        "billing",
        "../etc",
        "a/b",
        "",
        "UPPER",
        "x" * 64,
        "ns\n",
        "{{ labels.namespace }}",
        "a.b",
        "-lead",
        "café",
        " shop",
    ]
)
# Mostly valid values, so that runs are actually planned (one_of picks a branch uniformly);
# the rest hostile or arbitrary.
VALID = st.sampled_from(["shop", "billing", "web", "workers"])
LABEL_VALUES = st.one_of(VALID, VALID, VALID, HOSTILE, st.text())
LABELS = st.fixed_dictionaries(
    {
        "alertname": st.sampled_from(["HighMemoryUsage", "QueueBacklog", "Other"]),
        "namespace": LABEL_VALUES,
        "deployment": LABEL_VALUES,
    },
    optional={"severity": st.sampled_from(["critical", "warning"])},
)
ANNOTATIONS = st.fixed_dictionaries({}, optional={"owner": LABEL_VALUES})
TARGETS = st.builds(
    Target,
    kind=st.sampled_from(["Deployment", "StatefulSet"]),
    namespace=st.sampled_from(["shop", "billing"]),
    name=st.sampled_from(["web", "workers", "api"]),
)
PRIORS = st.builds(
    PriorRun,
    run_id=st.text(min_size=1, max_size=4),
    rule=st.sampled_from(["memory", "memory-critical", "queue", "gone"]),
    target=TARGETS,
    fingerprint=st.sampled_from(["fp1", "fp2"]),
    starts_at=st.sampled_from([STARTS, "2024-05-01T10:00:00Z"]),
    created_at=st.integers(min_value=-3 * 86400, max_value=60).map(
        lambda s: NOW + timedelta(seconds=s)
    ),
    outcome=st.sampled_from(list(RunOutcome)),
    closed=st.booleans(),
)
HISTORIES = st.builds(
    History,
    episode_runs=st.lists(PRIORS, max_size=2).map(tuple),
    recent_runs=st.lists(PRIORS, max_size=6).map(tuple),
    episode_resolved=st.sampled_from([False, False, False, True]),
)
EVENTS = st.builds(
    event,
    LABELS,
    status=st.sampled_from(list(Status)),
    annotations=ANNOTATIONS,
    fingerprint=st.sampled_from(["fp1", "fp2"]),
)


# Compiled once: hypothesis calls each property a hundred times.
PROPERTY_RULES = compile_files({"rules.yaml": RULES}, registry(), POLICY)
