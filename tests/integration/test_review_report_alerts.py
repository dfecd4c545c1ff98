"""What the report says became of each alert, from runs the real pipeline stored (PostgreSQL
and Redis): a run the pause refused is not "acted"."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from receiver.model import RunOutcome
from receiver.review.loader import Review
from receiver.review.markdown import render_markdown
from tests.support.pipeline import Harness, MakeHarness
from tests.support.rules import Restart

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULE = "restart-on-high-memory"
RULES = """
rules:
  - name: restart-on-high-memory
    match: ['alertname="HighMemoryUsage"']
    target:
      kind: Deployment
      namespace: "{{ labels.namespace }}"
      name: "{{ labels.deployment }}"
    steps:
      - action: test.restart
    verify: {resolved_within: 10m}
"""
LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}


async def _report(h: Harness) -> dict[str, Any]:
    now = await h.store.server_now()
    return await Review(h.store).report(now - timedelta(minutes=5), now + timedelta(minutes=5))


def _alert_rows(report: dict[str, Any]) -> list[str]:
    lines = render_markdown(report).splitlines()
    return [ln for ln in lines if ln.startswith("| HighMemoryUsage |")]


async def test_a_run_the_pause_refused_reads_refused_by_pause_not_acted(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RULES, dry_run=False, extra_actions=[Restart()])
    await h.guards.pause(None, "maintenance window")
    await h.deliver(LABELS)
    run = await h.only_run()
    assert (run.outcome, run.refusal_guard) == (RunOutcome.REFUSED, "pause")

    report = await _report(h)
    [incident] = report["incidents"]
    [alert] = incident["alerts"]
    assert alert["status"] == "refused"  # nothing was done to the Deployment
    [row] = _alert_rows(report)
    assert row.endswith(f"| refused by pause ({RULE}) |"), row
    assert alert["refused_by"] == "pause"
    assert alert["runs"] == [
        {"run_id": run.id, "rule": RULE, "status": "refused", "refused_by": "pause"}
    ]
    assert [r["guard"] for r in incident["refusals"]] == ["pause"]
