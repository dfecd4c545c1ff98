"""The rule and the alert of the tests that stop a served remediator between two steps
(``test_serve_stop_*``): rule ``two-calls`` makes two HTTP calls to endpoint ``sink`` for an
alert ``TwoCalls``, so a stop can land between them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_STEPS = """\
    steps:
      - action: http.call
        params: {body: {step: first}}
        approval: never
      - action: http.call
        params: {body: {step: second}}
        approval: never
"""


def two_calls_rule(
    guards: str | None = None,
    *,
    name: str = "two-calls",
    matchers: tuple[str, ...] = ('alertname="TwoCalls"',),
    endpoint: str = "sink",
) -> str:
    """The rules file of rule ``name`` (its ``match``: ``matchers``, target HttpEndpoint
    ``endpoint``): two ``http.call`` steps, bodies ``{step: first}`` and ``{step: second}``, no
    approval. ``guards``: the rule's guards as a YAML flow mapping (``{max_runs: {count: 100, per:
    1h}}``), none when None."""
    head = f"""\
rules:
  - name: {name}
    match: [{", ".join(f"'{m}'" for m in matchers)}]
    target: {{kind: HttpEndpoint, name: {endpoint}}}
"""
    return head + (f"    guards: {guards}\n" if guards is not None else "") + _STEPS


def two_calls_alert(fingerprint: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """Alertmanager's notification of one firing ``TwoCalls`` alert with ``labels`` (its
    ``alertname`` included) and ``fingerprint`` (16 hex digits), in group ``alertname``."""
    return {
        "receiver": "remediator",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": dict(labels),
                "annotations": {},
                "startsAt": "2024-05-27T07:14:54.523Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": fingerprint,
            }
        ],
        "groupLabels": {"alertname": "TwoCalls"},
        "commonLabels": dict(labels),
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="TwoCalls"}',
        "truncatedAlerts": 0,
    }


def two_calls_env(
    base: Mapping[str, str],
    *,
    database_url: str,
    redis_url: str,
    token: str,
    rules: Path,
    sink: str,
) -> dict[str, str]:
    """``base`` (``served.env_for``) with the test stores, webhook ``token``, the rules
    directory ``rules`` and endpoint ``sink`` at ``sink`` (a URL), one event at a time per
    worker (``worker.concurrency`` 1)."""
    return {
        **base,
        "REMEDIATOR_DATABASE_URL": database_url,
        "REMEDIATOR_REDIS_URL": redis_url,
        "REMEDIATOR_WEBHOOK_TOKEN": token,
        "REMEDIATOR_RULES_DIR": str(rules),
        "REMEDIATOR_HTTP_ENDPOINTS": json.dumps({"sink": {"url": sink}}),
        "REMEDIATOR_WORKER_CONCURRENCY": "1",
    }
