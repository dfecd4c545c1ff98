"""What the report says became of each alert, from runs the real pipeline stored (PostgreSQL
and Redis): a run the pause refused is not "acted", and an alert that resolved and fired again
with the same startsAt (a re-fire) is a second row that did not resolve."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from receiver.model import RunOutcome, VerifyResult
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


async def test_a_refire_that_did_not_resolve_is_its_own_row_still_firing(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RULES, dry_run=False, extra_actions=[Restart()])
    # Re-fires with the same startsAt count as a new occurrence at once (no late copies here).
    h.store.late_delivery_window_s = 0.0
    await h.deliver(LABELS)
    await h.deliver(LABELS, status="resolved")
    await h.deliver(LABELS)  # Alertmanager fires it again, with the same startsAt
    first, second = sorted(await h.runs(), key=lambda r: r.refire)
    assert (first.refire, second.refire) == (0, 1)
    assert first.outcome is RunOutcome.VERIFIED
    # The re-fire's verification deadline passes with the alert still firing.
    async with h.store._tx() as conn:
        await conn.execute(
            "UPDATE runs SET verify_deadline = now() - interval '1 second' WHERE id = $1::uuid",
            second.id,
        )
        await conn.execute(
            "UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid AND state = 'pending'",
            second.id,
        )
    await h.drain()
    second = next(r for r in await h.runs() if r.id == second.id)
    assert (second.outcome, second.verify_result) == (
        RunOutcome.FAILED,
        VerifyResult.NOT_RESOLVED,
    )

    report = await _report(h)
    [incident] = report["incidents"]
    alerts = incident["alerts"]
    # One row per occurrence: the re-fire's is not folded into the resolved first one.
    assert [a["resolved_at"] is None for a in alerts] == [False, True]
    assert [(a["refire"], a["status"]) for a in alerts] == [(0, "acted"), (1, "acted")]
    assert alerts[0]["fingerprint"] == alerts[1]["fingerprint"] == first.fingerprint
    assert alerts[0]["starts_at"] == alerts[1]["starts_at"] == first.starts_at
    assert [[r["run_id"] for r in a["runs"]] for a in alerts] == [[first.id], [second.id]]
    rows = _alert_rows(report)
    assert len(rows) == 2
    assert rows[1].endswith(f"|   | fired again after resolving (re-fire 1): acted ({RULE}) |"), (
        rows[1]
    )
