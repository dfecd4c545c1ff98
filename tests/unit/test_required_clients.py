"""Which clients the loaded rules need, from each action's requires(target). Pure."""

from __future__ import annotations

from typing import Any

from receiver.clients import required_clients
from receiver.model import NamespacePolicy
from receiver.rules.compile import compile_files
from remediations.registry import default_registry


def rules_needing(text: str) -> Any:
    return compile_files({"rules.yaml": text}, default_registry(), NamespacePolicy())


def test_required_clients_follow_the_targets() -> None:
    required = required_clients(
        rules_needing(
            """
rules:
  - name: fixed
    match: ['alertname="A"']
    target: {kind: PostgresDatabase, name: orders}
    steps: [{action: postgres.terminate_idle, params: {roles: [app], idle_for: 10m}}]
  - name: from-labels
    match: ['alertname="B"']
    target: {kind: RedisQueue, name: "jobs/{{ labels.queue }}"}
    steps:
      - {action: redis.requeue_dead_letters}
      - {action: notify, params: {channel: oncall, message: hi}}
  - name: any-database
    match: ['alertname="C"']
    target: {kind: PostgresDatabase, name: "{{ labels.database }}"}
    steps: [{action: postgres.cancel_long_queries, params: {roles: [app], running_for: 5m}}]
"""
        ),
        default_registry(),
    )
    assert required.names == {"postgres:orders", "redis:jobs", "notify"}
    assert required.any_of == {"postgres"}
    assert required.channels == {"oncall"}
    assert required.wants("postgres:billing")  # any database: the label decides
    assert not required.wants("redis:cache")
    assert required.by["redis:jobs"] == ("from-labels (redis.requeue_dead_letters)",)


def test_announcements_and_the_escalation_ladder_need_their_clients_too() -> None:
    required = required_clients(
        rules_needing(
            """
rules:
  - name: announced
    match: ['alertname="A"']
    target: {kind: Deployment, namespace: shop, name: web}
    steps: [{action: kubernetes.rollout_restart}]
    verify: {resolved_within: 10m}
    on_failed: [{action: notify, params: {channel: escalations, message: it came back}}]
    notify: {channel: oncall}
"""
        ),
        default_registry(),
    )
    assert required.names == {"kubernetes", "notify"}
    assert required.channels == {"oncall", "escalations"}
    assert required.by["notify"] == (
        "announced (notify: announcements)",
        "announced (notify)",
    )


def test_each_rule_is_named_once_for_a_connection_the_labels_pick() -> None:
    # The shipped rule was named twice in the startup warning: once per probe target.
    required = required_clients(
        rules_needing(
            """
rules:
  - name: any-database
    match: ['alertname="C"']
    target: {kind: PostgresDatabase, name: "{{ labels.database }}"}
    steps:
      - {action: postgres.terminate_idle, params: {roles: [app], idle_for: 10m}}
      - {action: postgres.terminate_idle, params: {roles: [batch], idle_for: 1h}}
      - {action: postgres.cancel_long_queries, params: {roles: [app], running_for: 5m}}
"""
        ),
        default_registry(),
    )
    assert required.by["postgres:*"] == (
        "any-database (postgres.terminate_idle)",
        "any-database (postgres.cancel_long_queries)",
    )
