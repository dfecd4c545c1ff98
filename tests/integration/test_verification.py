"""Verification, the escalation ladder and run announcements through the real pipeline, on
real PostgreSQL and Redis, with a real local HTTP server as the notification channel.

The steps here are the rules tests' small actions (``tests.support.rules``) and the real
``notify`` action: what is under test is what happens around them: verified, failed (not
resolved in time), failed (recurred), the breaker counting those failures, on_failed steps,
and the messages a channel receives (or does not, and the run's record saying so).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from typing import Any

import aiohttp
import pytest

from receiver.guards.policy import GuardSettings
from receiver.model import RunOutcome, VerifyResult
from receiver.store import RunRecord
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from remediations.visible_text import LINE_BREAK
from tests.support.payloads import alert, notification
from tests.support.peer import Peer, Reply, peer
from tests.support.pipeline import Harness, MakeHarness
from tests.support.polling import eventually
from tests.support.rules import Restart

__all__ = ["peer"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

FAST = HttpPolicy(timeout=2.0, attempts=2, initial_wait=0.01, max_wait=0.02)
HOOK = "/hooks/oncall"
BROKEN = "/hooks/broken"
BREAKER = GuardSettings(breaker_failures=1, breaker_window_s=3600, breaker_open_for_s=3600)


TARGET = (
    'target: {kind: Deployment, namespace: "{{ labels.namespace }}", '
    'name: "{{ labels.deployment }}"}'
)


def rules(verify: str, *, on_failed: str = "", notify: str = "oncall", guards: str = "") -> str:
    return f"""
rules:
  - name: restart
    match: ['alertname="HighMemoryUsage"']
    {TARGET}
    steps:
      - action: test.restart
    verify: {verify}
    notify: {{channel: {notify}}}
{on_failed}{guards}"""


LADDER = """    on_failed:
      - action: notify
        params: {channel: oncall, message: "{{ labels.alertname }}: restart did not help"}
      - action: test.restart
"""


def labels(name: str = "web") -> dict[str, str]:
    return {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": name}


@pytest.fixture
async def notifier(peer: Peer) -> AsyncIterator[Notifier]:
    peer.answer(BROKEN, Reply(status=500, body="down"))
    async with aiohttp.ClientSession() as session:
        channels = {
            "oncall": Channel("oncall", ChannelKind.WEBHOOK, peer.url(HOOK), FAST),
            "broken": Channel("broken", ChannelKind.WEBHOOK, peer.url(BROKEN), FAST),
        }
        yield Notifier(channels, session, external_url="https://remediator.example")


async def harness(
    make_harness: MakeHarness, notifier: Notifier, text: str, **options: Any
) -> Harness:
    return await make_harness(
        text,
        dry_run=False,
        extra_actions=[Restart()],
        clients={"notify": notifier},
        **options,
    )


def events(peer: Peer) -> list[tuple[str, str]]:
    """(event, outcome) of every announcement the channel received, in order."""
    return [(r.body["event"], r.body["outcome"]) for r in peer.seen(HOOK)]


async def run_of(h: Harness, **filters: Any) -> RunRecord:
    (found,) = await h.runs(**filters)
    run = await h.store.get_run(found.id)
    assert run is not None
    return run


async def drained(h: Harness, accept: Any) -> RunRecord:
    """Drain (jobs come due as their time passes) until the one run satisfies ``accept``."""

    async def probe() -> RunRecord:
        await h.drain()
        return await h.only_run()

    run: RunRecord = await eventually(probe, accept)
    return run


def counter(h: Harness, name: str, **labels: str) -> float:
    value = h.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# --------------------------------------------------------------------------------------------
# verified


async def test_verified_when_the_alert_resolves_in_time(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m}"))
    await h.deliver(labels())
    run = await h.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    assert run.verify_result is None

    await h.deliver(labels(), status="resolved")
    run = await h.only_run()
    assert (run.outcome, run.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    assert run.finished_at is not None
    assert counter(h, "remediator_runs_total", rule="restart", outcome="verified") == 1
    assert counter(h, "remediator_verifications_total", rule="restart", result="verified") == 1
    assert events(peer) == [("run_started", "running"), ("run_finished", "verifying")]


async def test_with_a_settle_period_it_is_verified_only_once_the_alert_stayed_resolved(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m, settle: 1s}"))
    await h.deliver(labels())
    await h.deliver(labels(), status="resolved")
    run = await h.only_run()
    # Resolved in time, but it may still come back: settling.
    assert run.outcome is RunOutcome.VERIFYING
    assert run.resolved_at is not None
    assert run.settle_until is not None
    run = await drained(h, lambda r: r.outcome is not RunOutcome.VERIFYING)
    assert (run.outcome, run.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    audit = [a["kind"] for a in await h.store.audit_entries(run.id)]
    assert audit[-1] == "run.verified"


# --------------------------------------------------------------------------------------------
# failed: not resolved in time


async def test_not_resolved_in_time_fails_counts_in_the_breaker_and_climbs_the_ladder(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(
        make_harness,
        notifier,
        rules("{resolved_within: 1s}", on_failed=LADDER),
        guard_settings=BREAKER,
    )
    await h.deliver(labels())
    run = await drained(h, lambda r: r.outcome is RunOutcome.FAILED)
    assert run.verify_result is VerifyResult.NOT_RESOLVED
    assert run.error is not None
    assert "did not resolve within 1s" in run.error
    assert run.escalated_at is not None
    # The ladder ran, after the run's own step, through the same execute stage.
    assert [(s.phase, s.action, s.outcome) for s in run.steps] == [
        ("run", "test.restart", "noop"),
        ("on_failed", "notify", "ok"),
        ("on_failed", "test.restart", "noop"),
    ]
    assert [s.idx for s in run.steps] == [0, 1, 2]  # never the index of a run step
    assert counter(h, "remediator_verifications_total", rule="restart", result="not_resolved") == 1
    assert events(peer) == [
        ("run_started", "running"),
        ("run_finished", "verifying"),
        ("verification_failed", "failed"),
        ("step", ""),  # the on_failed notify step's own message
    ]
    failed = peer.seen(HOOK)[2].body
    assert failed["text"].startswith("not resolved in time: the alert did not resolve")
    # The ladder's own message speaks of the alert, though a job (not the alert) ran it.
    assert peer.seen(HOOK)[3].body["text"] == "HighMemoryUsage: restart did not help"
    assert failed["links"]["run"] == f"https://remediator.example/api/v1/runs/{run.id}"

    # The failure opened the breaker (threshold 1): the next episode is refused by it.
    status = await h.guards.status()
    assert status["breakers"]["restart"]["failures"] == 1
    await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T11:00:00Z")))
    await h.drain()
    refused = await run_of(h, outcome="refused")
    assert refused.refusal_guard == "breaker"
    assert ("run_refused", "refused") in events(peer)


async def test_a_retried_escalation_job_counts_the_failure_once_and_says_it_once(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 1s}"))
    await h.deliver(labels())
    run = await drained(h, lambda r: r.outcome is RunOutcome.FAILED)
    # As if the job ran again (a crash after its work, a retry by an operator).
    await h.store.enqueue_job("resume_run", run.id)
    await h.drain()
    status = await h.guards.status()
    assert status["breakers"]["restart"]["failures"] == 1
    assert [e for e, _ in events(peer)].count("verification_failed") == 1


async def test_resolving_after_the_deadline_is_not_verified(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 1s}"))
    await h.deliver(labels())
    run = await h.only_run()
    # As if it had been created a minute ago, so that a resolution 5 s after its deadline has
    # passed (one still ahead would be dated when it is read).
    await h.store._pool.execute(
        """UPDATE runs SET created_at = created_at - interval '1 minute',
                          verify_deadline = verify_deadline - interval '1 minute'
           WHERE id = $1::uuid""",
        run.id,
    )
    run = await h.only_run()
    assert run.verify_deadline is not None
    # It resolves (its endsAt) after the deadline, and the worker sees that before the job.
    late = (run.verify_deadline + timedelta(seconds=5)).astimezone(UTC)
    ends_at = late.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    await h.intake.accept(notification(alert(labels(), status="resolved", ends_at=ends_at)))
    run = await drained(h, lambda r: r.outcome is not RunOutcome.VERIFYING)
    assert run.resolved_at == late
    assert (run.outcome, run.verify_result) == (RunOutcome.FAILED, VerifyResult.NOT_RESOLVED)


# --------------------------------------------------------------------------------------------
# failed: recurred


async def test_a_refire_while_settling_fails_it_as_recurred_before_its_own_run_is_admitted(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(
        make_harness,
        notifier,
        rules("{resolved_within: 10m, settle: 30m}", on_failed=LADDER),
        guard_settings=BREAKER,
    )
    # Re-fires with the same startsAt count as a new occurrence at once (no late copies here).
    h.store.late_delivery_window_s = 0.0
    await h.deliver(labels())
    await h.deliver(labels(), status="resolved")
    first = await h.only_run()
    assert first.outcome is RunOutcome.VERIFYING
    assert first.settle_until is not None

    await h.deliver(labels())  # Alertmanager fires it again: the restart did not stick
    first = await run_of(h, outcome="failed")
    assert first.verify_result is VerifyResult.RECURRED
    assert first.error is not None
    assert "fired again on the target" in first.error
    assert [(s.phase, s.outcome) for s in first.steps if s.phase == "on_failed"] == [
        ("on_failed", "ok"),
        ("on_failed", "noop"),
    ]
    # The escalation's admission is audited as the on_failed phase's: it was "resolve", and the
    # review said "Guards passed (on_resolved steps)" of a rule with no on_resolved step.
    admitted = [
        row["data"]["phase"]
        async for row in h.store.export_audit()
        if row["kind"] == "run.admitted" and row["run_id"] == first.id
    ]
    assert admitted == ["run", "on_failed"]
    # Counted in the breaker before the re-fire's own run asked it: refused by the breaker.
    second = await run_of(h, outcome="refused")
    assert second.refire == 1
    assert second.refusal_guard == "breaker"
    assert counter(h, "remediator_verifications_total", rule="restart", result="recurred") == 1
    assert counter(h, "remediator_runs_total", rule="restart", outcome="failed") == 1
    failed = [r.body for r in peer.seen(HOOK) if r.body["event"] == "verification_failed"]
    assert len(failed) == 1
    assert failed[0]["run_id"] == first.id
    assert failed[0]["text"].startswith("recurred: the alert fired again")


async def test_a_late_copy_of_the_firing_is_not_a_recurrence(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m, settle: 30m}"))
    await h.deliver(labels())
    await h.deliver(labels(), status="resolved")
    await h.deliver(labels())  # within the late-delivery window: an HA peer's copy
    run = await h.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    assert run.verify_result is None


async def test_another_target_firing_is_not_a_recurrence(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m, settle: 30m}"))
    await h.deliver(labels("web"))
    await h.deliver(labels("web"), status="resolved")
    await h.deliver(labels("api"))
    web = await run_of(h, target="Deployment/shop/web")
    assert web.outcome is RunOutcome.VERIFYING


# --------------------------------------------------------------------------------------------
# announcements


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
