"""Run announcements: telling a channel that a run started, was refused, waits for an
approval, finished, or failed its verification.

A rule opts in with ``notify: {channel: oncall, events: [...]}``. Each message names the alert, the
target, the rule, the outcome and the steps with what they changed (before -> after), and links
back to the run (``Notifier.run_url``, under ``external_url``). It is sent with the service's
notifier (``remediations.notify``, the channels of ``notify.channels``), whose ``send`` never
raises. Whatever happens, delivered or not, is one ``run.announced`` audit row on the run, so a
reviewer sees a message that did not go out; an announcement never changes a run's outcome.

Approval requests are the approval desk's to announce (with the link, and buttons in Slack):
when the desk posts to the same channel, the run's "awaiting approval" message is not sent a
second time. Decisions (approved, rejected, expired, cancelled) are the desk's notices too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from receiver.model import Announcement
from receiver.pipeline.context import Deps, RunContext
from receiver.pipeline.steps import alert_facts
from receiver.store import RunRecord
from remediations.base import AlertFacts
from remediations.notify.message import ChannelKind, Event, Message, StepSummary, mrkdwn_escape
from remediations.notify.notifier import Notifier

__all__ = ["Announcer"]

_EVENTS = {
    Announcement.STARTED: Event.RUN_STARTED,
    Announcement.REFUSED: Event.RUN_REFUSED,
    Announcement.AWAITING_APPROVAL: Event.AWAITING_APPROVAL,
    Announcement.FINISHED: Event.RUN_FINISHED,
    Announcement.VERIFICATION_FAILED: Event.VERIFICATION_FAILED,
}

_HEADLINES = {
    Announcement.STARTED: "Remediation started",
    Announcement.REFUSED: "Remediation refused",
    Announcement.AWAITING_APPROVAL: "Remediation waits for an approval",
    Announcement.VERIFICATION_FAILED: "Remediation did not fix it",
}

_FINISHED = {
    "verifying": "Remediation done, verifying",
    "succeeded": "Remediation succeeded",
    "dry_run": "Remediation ran dry (nothing changed)",
    "failed": "Remediation failed",
    "refused": "Remediation stopped by a precondition",
}


class Announcer:
    """``await announcer(ctx, moment, outcome=..., text=...)``: send if the rule asks for this
    moment, record what happened. Never raises for a delivery problem."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    def _desk_channel(self) -> str | None:
        desk = self._deps.approvals
        notifier = desk.notifier if desk is not None else None
        channel = getattr(notifier, "channel", None)
        return channel if isinstance(channel, str) else None

    async def __call__(
        self, ctx: RunContext, moment: Announcement, *, outcome: str, text: str = ""
    ) -> None:
        spec, deps = ctx.announce, self._deps
        if spec is None or moment not in spec.events or ctx.run_id is None:
            return
        if moment is Announcement.AWAITING_APPROVAL and self._desk_channel() == spec.channel:
            ctx.log.debug("approval request left to the approval desk", channel=spec.channel)
            return
        configured = False
        fingerprint = ctx.event.fingerprint if ctx.event is not None else None
        if deps.clients.has("notify"):
            notifier: Notifier = deps.clients.get("notify")
            channel = notifier.channels.get(spec.channel)
            configured = channel is not None
            # The run is read for the message only: the message says what it did.
            run = await deps.store.get_run(ctx.run_id)
            fingerprint = run.fingerprint if run is not None else None
            message = self._message(ctx, run, moment, outcome, text)
            if channel is not None and channel.kind is ChannelKind.SLACK:
                # The text quotes the alert and the refusal as they are: no label may turn
                # into a link or a mention in Slack's mrkdwn.
                message = replace(message, text=mrkdwn_escape(message.text))
            delivery = await notifier.send(spec.channel, message)
            delivered, detail = delivery.ok, delivery.detail
        else:
            # Nothing to send: the run is not read (a storm of refusals paid a read each).
            delivered, detail = False, "no notification channels are configured (notify.channels)"
            if fingerprint is None:
                run = await deps.store.get_run(ctx.run_id)
                fingerprint = run.fingerprint if run is not None else None
        await deps.store.record_announcement(
            ctx.run_id,
            fingerprint=fingerprint,
            event=moment.value,
            channel=spec.channel,
            delivered=delivered,
            detail=detail,
        )
        deps.metrics.announced(moment.value, delivered)
        # A channel that is not configured was warned about once, at start-up, and each run's
        # audit row says it again: a warning per run would be 10,000 lines in a storm.
        log = ctx.log.info if delivered else ctx.log.warning if configured else ctx.log.debug
        log(
            "announced" if delivered else "announcement not delivered",
            moment=moment.value,
            channel=spec.channel,
            detail=detail,
        )

    def _message(
        self,
        ctx: RunContext,
        run: RunRecord | None,
        moment: Announcement,
        outcome: str,
        text: str,
    ) -> Message:
        assert ctx.run_id is not None
        steps: list[StepSummary] = []
        dry_run = self._deps.settings.dry_run
        if run is not None:
            dry_run = dry_run or run.dry_run
            steps = [
                StepSummary(
                    action=(s.action if s.phase == "run" else f"{s.phase}: {s.action}"),
                    outcome=s.outcome,
                    message=s.message,
                    before=s.before or {},
                    after=s.after or {},
                )
                for s in run.steps
            ]
        headline = (
            _FINISHED.get(outcome, f"Remediation {outcome}")
            if moment is Announcement.FINISHED
            else _HEADLINES[moment]
        )
        alert = alert_facts(ctx)
        summary = _summary(alert)
        return Message(
            event=_EVENTS[moment],
            title=f"{headline}: {ctx.rule} on {ctx.target.key}",
            text="\n".join(part for part in (text, summary) if part),
            rule=ctx.rule,
            run_id=ctx.run_id,
            outcome=outcome,
            dry_run=dry_run,
            target={**ctx.target.as_dict(), "key": ctx.target.key},
            alert=alert,
            steps=steps,
        )


def _summary(alert: AlertFacts) -> str:
    annotations: Any = alert.annotations
    return str(annotations.get("summary") or annotations.get("description") or "")
