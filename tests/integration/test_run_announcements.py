"""Run announcements through the real pipeline, on real PostgreSQL and Redis, with a real local
HTTP server as the notification channel.

The steps here are the rules tests' small actions (``tests.support.rules``) and the real
``notify`` action: what is under test is the messages a channel receives (what was done to
what, with links back; only the moments a rule asks for; a run waiting for approval), or does
not, and the run's record saying so; an undeliverable message never fails a run."""

from __future__ import annotations

import pytest

from receiver.model import RunOutcome
from remediations.notify.notifier import Notifier
from remediations.visible_text import LINE_BREAK
from tests.support.payloads import alert, notification
from tests.support.peer import Peer, peer
from tests.support.pipeline import MakeHarness
from tests.support.verification import (
    BROKEN,
    HOOK,
    TARGET,
    counter,
    events,
    harness,
    labels,
    notifier,
    rules,
    run_of,
)

__all__ = ["notifier", "peer"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_an_undeliverable_announcement_never_fails_the_run_and_is_recorded(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m}", notify="broken"))
    await h.deliver(labels())
    run = await h.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    assert len(peer.seen(BROKEN)) == 4  # two moments, two attempts each
    announced = [a for a in await h.store.audit_entries(run.id) if a["kind"] == "run.announced"]
    assert [(a["data"]["event"], a["data"]["delivered"]) for a in announced] == [
        ("started", False),
        ("finished", False),
    ]
    assert "HTTP 500" in announced[0]["data"]["detail"]
    assert peer.base not in str(announced)  # the channel's URL is a secret: never recorded
    assert counter(h, "remediator_announcements_total", event="finished", delivered="false") == 1


async def test_a_channel_that_is_not_configured_is_recorded_too(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m}", notify="pager"))
    await h.deliver(labels())
    run = await h.only_run()
    (first, _) = [a for a in await h.store.audit_entries(run.id) if a["kind"] == "run.announced"]
    assert first["data"]["delivered"] is False
    assert "no channel named 'pager'" in first["data"]["detail"]


async def test_the_message_says_what_was_done_to_what_and_links_back(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m}"))
    await h.deliver(labels())
    run = await h.only_run()
    started, finished = (r.body for r in peer.seen(HOOK))
    assert started["title"] == "Remediation started: restart on Deployment/shop/web"
    assert finished["title"] == "Remediation done, verifying: restart on Deployment/shop/web"
    assert finished["text"].startswith("verifying: the alert must resolve within 10m")
    assert finished["rule"] == "restart"
    assert finished["run_id"] == run.id
    assert finished["target"]["key"] == "Deployment/shop/web"
    assert finished["alert"]["labels"]["alertname"] == "HighMemoryUsage"
    assert finished["steps"] == [
        {
            "action": "test.restart",
            "outcome": "noop",
            "message": "test action",
            "before": {},
            "after": {},
        }
    ]
    assert finished["links"]["run"] == f"https://remediator.example/api/v1/runs/{run.id}"
    assert peer.seen(HOOK)[0].headers["X-Remediator-Run-Id"] == run.id


async def test_the_alerts_summary_stays_on_its_line(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    # Before, the summary went out as written: its second line read as the service's own.
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m}"))
    forged = "disk full\nRemediation succeeded: nothing left to do"
    await h.intake.accept(notification(alert(labels(), annotations={"summary": forged})))
    await h.drain()
    started = peer.seen(HOOK)[0].body
    assert started["text"] == (
        f"steps: test.restart\ndisk full{LINE_BREAK}Remediation succeeded: nothing left to do"
    )
    assert started["alert"]["annotations"]["summary"] == forged  # for programs: as recorded


async def test_only_the_moments_a_rule_asks_for(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    text = rules("{resolved_within: 10m}", notify="oncall, events: [refused]").replace(
        "verify: {resolved_within: 10m}",
        "verify: {resolved_within: 10m}\n    guards: {cooldown: 1h}",
    )
    h = await harness(make_harness, notifier, text)
    await h.deliver(labels())
    assert events(peer) == []
    await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T11:00:00Z")))
    await h.drain()
    ((event, outcome),) = events(peer)
    assert (event, outcome) == ("run_refused", "refused")
    assert peer.seen(HOOK)[0].body["text"].startswith("refused by the cooldown guard")


async def test_a_run_waiting_for_approval_is_announced_when_nobody_else_says_it(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    text = rules("{resolved_within: 10m}").replace(
        "      - action: test.restart\n",
        "      - action: test.restart\n        approval: required\n",
        1,
    )
    h = await harness(make_harness, notifier, text)  # no approval desk: nobody is asked
    await h.deliver(labels())
    assert (await h.only_run()).outcome is RunOutcome.AWAITING_APPROVAL
    assert events(peer) == [("run_started", "running"), ("awaiting_approval", "awaiting_approval")]
    # A wakeup of the parked run does not say it again.
    await h.store.enqueue_job("resume_run", (await h.only_run()).id)
    await h.drain()
    assert len(events(peer)) == 2


async def test_runs_without_a_cluster_leave_their_live_conditions_out_saying_why(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    text = rules("{resolved_within: 10m}").replace(
        "      - action: test.restart\n",
        "      - action: test.restart\n        when: {rolled_out_within: 30m}\n"
        "      - action: notify\n        params: {channel: oncall, message: hi}\n",
        1,
    )
    h = await harness(make_harness, notifier, text)  # no Kubernetes client at all
    await h.deliver(labels())
    run = await h.only_run()
    assert [s.action for s in run.steps] == ["notify"]
    assert run.decision is not None
    (fact,) = run.decision["facts"]
    assert fact["error"] == "no Kubernetes credentials are configured (client 'kubernetes')"
    assert run.decision["steps"][0]["included"] is False
    created = [a for a in await h.store.audit_entries(run.id) if a["kind"] == "run.created"]
    assert created[0]["data"]["decision"] == run.decision


async def test_a_notify_step_that_cannot_deliver_never_fails_its_run(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    # A runbook step that tells a channel, then acts: the channel being down is recorded on
    # the step and the run goes on to the action and to verification.
    text = f"""
rules:
  - name: restart
    match: ['alertname="HighMemoryUsage"']
    {TARGET}
    steps:
      - action: notify
        params: {{channel: broken, message: "restarting {{{{ labels.deployment }}}}"}}
      - action: test.restart
    verify: {{resolved_within: 10m}}
"""
    h = await harness(make_harness, notifier, text)
    await h.deliver(labels())
    run = await run_of(h)
    assert run.outcome is RunOutcome.VERIFYING
    assert [(s.action, s.outcome) for s in run.steps] == [
        ("notify", "undelivered"),
        ("test.restart", "noop"),  # the test action ran (it changes nothing)
    ]
    assert "HTTP 500" in run.steps[0].message
    assert len(peer.seen(BROKEN)) == 2  # both attempts of the step's one message
