"""Run announcements: telling a channel that a run started, was refused, waits for an
approval, finished, failed its verification, or that its undo (on_resolved steps) did not
happen (``undo.py``).

A rule opts in with ``notify: {channel: oncall, events: [...]}``. Each message names the alert, the
target, the rule, the outcome and the steps with what they changed (before -> after), and links
back to the run (``Notifier.run_url``, under ``external_url``). It is sent with the service's
notifier (``remediations.notify``, the channels of ``notify.channels``), whose ``send`` never
raises. Whatever happens, delivered or not, is one ``run.announced`` audit row on the run, so a
reviewer sees a message that did not go out; an announcement never changes a run's outcome.

A rule's refusals to a channel are folded into digests (``folded``; ``pipeline.digest`` sends
them): the first is sent, those that follow within the window are recorded on their runs as
folded, and one digest tells the channel of them when the window ends.

The steps do not wait for a channel: "started" is waited for at most ``STARTED_WAIT_S`` and then
goes on beside them (``started``), and the run's next announcement, or the end of the pass,
waits for it first, so the channel gets them in order and the pass records both.

Approval requests are the approval desk's to announce (with the link, and buttons in Slack):
when the desk posts to the same channel, the run's "awaiting approval" message is not sent a
second time. Decisions (approved, rejected, expired, cancelled) are the desk's notices too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from receiver.guards.policy import GuardError, GuardUnavailable
from receiver.log_limits import Throttle
from receiver.model import Announcement, RunOutcome
from receiver.pipeline.context import Deps, RunContext
from receiver.pipeline.steps import alert_facts
from receiver.refusal_digest import folded_detail, window_id
from receiver.store import RunRecord, announced_data
from remediations.base import AlertFacts
from remediations.notify.message import Event, Message, StepSummary
from remediations.notify.notifier import Notifier
from remediations.visible_text import one_line

__all__ = ["Announcer"]

_EVENTS = {
    Announcement.STARTED: Event.RUN_STARTED,
    Announcement.REFUSED: Event.RUN_REFUSED,
    Announcement.AWAITING_APPROVAL: Event.AWAITING_APPROVAL,
    Announcement.FINISHED: Event.RUN_FINISHED,
    Announcement.VERIFICATION_FAILED: Event.VERIFICATION_FAILED,
    Announcement.UNDO_FAILED: Event.UNDO_FAILED,
}

_HEADLINES = {
    Announcement.STARTED: "Remediation started",
    Announcement.REFUSED: "Remediation refused",
    Announcement.AWAITING_APPROVAL: "Remediation waits for an approval",
    Announcement.VERIFICATION_FAILED: "Remediation did not fix it",
    Announcement.UNDO_FAILED: "Remediation not undone",
}

_FINISHED = {
    "verifying": "Remediation done, verifying",
    "succeeded": "Remediation succeeded",
    "dry_run": "Remediation ran dry (nothing changed)",
    "failed": "Remediation failed",
    "refused": "Remediation stopped by a precondition",
}

# How long a run's steps wait for its "started" announcement (seconds) before they go on beside
# it: a channel that does not answer takes its attempts of 5 s each and the waits between them
# (a Retry-After of up to 30 s each), and held the remediation all that time.
STARTED_WAIT_S = 2.0

# At most one warning per this many seconds that refusals are sent one by one because their
# digest window could not be asked (Redis down: a storm would log one line per refusal).
_UNFOLDED_LOG_EVERY_S = 10.0


class Announcer:
    """``await announcer(ctx, moment, outcome=..., text=...)``: send if the rule asks for this
    moment, record what happened. Never raises for a delivery problem."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._unfolded = Throttle(_UNFOLDED_LOG_EVERY_S)

    def _desk_channel(self) -> str | None:
        desk = self._deps.approvals
        notifier = desk.notifier if desk is not None else None
        channel = getattr(notifier, "channel", None)
        return channel if isinstance(channel, str) else None

    def _asks(self, ctx: RunContext, moment: Announcement) -> bool:
        """Whether the rule announces ``moment`` of this run (and it is not the approval
        desk's to announce)."""
        spec = ctx.announce
        if spec is None or moment not in spec.events or ctx.run_id is None:
            return False
        if moment is Announcement.AWAITING_APPROVAL and self._desk_channel() == spec.channel:
            ctx.log.debug("approval request left to the approval desk", channel=spec.channel)
            return False
        return True

    def _unsendable(self, channel: str) -> str | None:
        """Why a message to ``channel`` cannot go out, before anything is built; None when
        it can be sent."""
        if not self._deps.clients.has("notify"):
            return "no notification channels are configured (notify.channels)"
        notifier: Notifier = self._deps.clients.get("notify")
        return notifier.unknown(channel)

    def sends(self, ctx: RunContext, moment: Announcement) -> bool:
        """Whether announcing ``moment`` sends a message: the rule asks for it and a channel
        can take it. The work is not over until it is sent (and recorded)."""
        if not self._asks(ctx, moment):
            return False
        assert ctx.announce is not None
        return self._unsendable(ctx.announce.channel) is None

    def unsent(self, ctx: RunContext, moment: Announcement) -> dict[str, Any] | None:
        """The ``run.announced`` data of ``moment`` when the rule asks for it but no channel
        can send it (no notifier, or no channel of that name): the caller writes it with its
        own statement (a storm's refusals: one transaction per event) and then calls
        ``noted``. None when there is nothing to record, or a message to send: call the
        announcer once the run is stored."""
        if not self._asks(ctx, moment):
            return None
        assert ctx.announce is not None
        detail = self._unsendable(ctx.announce.channel)
        if detail is None:
            return None
        return announced_data(
            event=moment.value, channel=ctx.announce.channel, delivered=False, detail=detail
        )

    async def folded(self, ctx: RunContext, guard: str) -> dict[str, Any] | None:
        """The ``run.announced`` data of this run's refusal by ``guard`` when it is folded into
        the refusal digest of its rule and channel (one Redis call), to record instead of
        sending it: ``delivered`` False, ``digest`` the window's id, and a detail naming the
        window. None when it is to be sent as it always was: it opened the window, folding is
        off (``refusal_digest_s`` 0), nothing would be sent (``sends``), or Redis could not be
        asked (logged: a message too many is better than a message lost)."""
        window_s = self._deps.settings.refusal_digest_s
        if window_s <= 0 or not self.sends(ctx, Announcement.REFUSED):
            return None
        spec = ctx.announce
        assert spec is not None
        assert ctx.run_id is not None
        try:
            folding = await self._deps.guards.digests.fold(
                rule=ctx.rule,
                channel=spec.channel,
                run_id=ctx.run_id,
                guard=guard,
                target_key=ctx.target.key,
                window_s=window_s,
            )
        except (GuardUnavailable, GuardError) as exc:
            held_back = self._unfolded.ready()
            if held_back is not None:
                ctx.log.warning(
                    "refusal digest unavailable: the refusal is announced on its own",
                    channel=spec.channel,
                    error=str(exc),
                    not_logged_since_last=held_back,
                )
            return None
        if not folding.folded:
            return None
        return announced_data(
            event=Announcement.REFUSED.value,
            channel=spec.channel,
            delivered=False,
            detail=folded_detail(ctx.rule, spec.channel, folding.start, folding.end),
            digest=window_id(ctx.rule, spec.channel, folding.start),
        )

    async def record(self, ctx: RunContext, data: Mapping[str, Any]) -> None:
        """Audit ``data`` (``folded``) on a run stored earlier, in a statement of its own."""
        assert ctx.run_id is not None
        # A run taken up again (a lock wait's job) has its record at hand: no read for it.
        known = ctx.prior if ctx.prior is not None else ctx.alert
        fingerprint = known.fingerprint if known is not None else None
        if fingerprint is None:
            run = await self._deps.store.get_run(ctx.run_id, with_steps=False)
            fingerprint = run.fingerprint if run is not None else None
        await self._deps.store.record_announcement(
            ctx.run_id,
            fingerprint=fingerprint,
            event=data["event"],
            channel=data["channel"],
            delivered=bool(data["delivered"]),
            detail=data["detail"],
            digest=data.get("digest"),
            lease=ctx.lease,
        )

    def noted(self, ctx: RunContext, data: Mapping[str, Any]) -> None:
        """Count and log an announcement recorded (``unsent``, ``folded``, or sent here)."""
        delivered = bool(data["delivered"])
        if "digest" in data:
            # Folded: one line per refusal of a storm would flood the log, and the digest
            # says it.
            self._deps.metrics.announced(data["event"], delivered, folded=True)
            ctx.log.debug("announcement folded into the refusal digest", window=data["digest"])
            return
        self._deps.metrics.announced(data["event"], delivered)
        # A channel that is not configured was warned about once, at start-up, and each run's
        # audit row says it again: a warning per run would be 10,000 lines in a storm. A
        # configured channel that did not take it is worth a warning.
        configured = self._unsendable(data["channel"]) is None
        log = ctx.log.info if delivered else ctx.log.warning if configured else ctx.log.debug
        log(
            "announced" if delivered else "announcement not delivered",
            moment=data["event"],
            channel=data["channel"],
            detail=data["detail"],
        )

    async def started(self, ctx: RunContext, *, text: str) -> None:
        """Announce that the run started, as ``__call__`` does, waiting for it at most
        ``STARTED_WAIT_S``; past that it goes on beside the steps (``ctx.announcing``), and
        the run's next announcement or the end of the pass (a cleanup) waits for it."""
        if not self._asks(ctx, Announcement.STARTED):
            return
        sending = asyncio.create_task(
            self(ctx, Announcement.STARTED, outcome=RunOutcome.RUNNING, text=text)
        )
        try:
            await asyncio.wait({sending}, timeout=STARTED_WAIT_S)
        except asyncio.CancelledError:
            sending.cancel()  # the pass is cut, and the send with it, as before
            raise
        if sending.done():
            return sending.result()  # its error (the store's) is the pass's, as before
        channel = ctx.announce.channel if ctx.announce is not None else None
        ctx.log.info("the steps go on while 'started' is sent", channel=channel)
        ctx.announcing = sending
        ctx.cleanups.append(lambda: self.settled(ctx))

    async def settled(self, ctx: RunContext) -> None:
        """Wait for the "started" announcement still on its way, if any; its failure to be
        recorded is logged (the steps ran meanwhile: the pass is theirs). A pass cancelled
        (the service stopping) cuts it, as it cut a send in its way before."""
        sending, ctx.announcing = ctx.announcing, None
        if sending is None:
            return
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            # Already stopping (a cleanup after the pass was cancelled): cut, and the cleanups
            # after this one (the lock's release) still run.
            sending.cancel()
        [outcome] = await asyncio.gather(sending, return_exceptions=True)
        if isinstance(outcome, Exception):
            ctx.log.error("the 'started' announcement could not be recorded", error=str(outcome))

    async def __call__(
        self, ctx: RunContext, moment: Announcement, *, outcome: str, text: str = ""
    ) -> None:
        if not self._asks(ctx, moment):
            return
        if ctx.announcing is not None and moment is not Announcement.STARTED:
            await self.settled(ctx)  # the channel gets "started" first
        spec, deps = ctx.announce, self._deps
        assert spec is not None
        assert ctx.run_id is not None
        fingerprint = ctx.event.fingerprint if ctx.event is not None else None
        detail = self._unsendable(spec.channel)
        if detail is None:
            notifier: Notifier = deps.clients.get("notify")
            # The run is read for the message only: the message says what it did.
            run = await deps.store.get_run(ctx.run_id)
            fingerprint = run.fingerprint if run is not None else None
            message = self._message(ctx, run, moment, outcome, text)
            delivery = await notifier.send(spec.channel, message)
            delivered, detail = delivery.ok, delivery.detail
        else:
            # Nothing to send: the run is not read (a storm of refusals paid a read each)
            # unless the alert's fingerprint is not at hand (a job took the run up).
            delivered = False
            if fingerprint is None:
                run = await deps.store.get_run(ctx.run_id, with_steps=False)
                fingerprint = run.fingerprint if run is not None else None
        data = announced_data(
            event=moment.value, channel=spec.channel, delivered=delivered, detail=detail
        )
        await deps.store.record_announcement(
            ctx.run_id, fingerprint=fingerprint, lease=ctx.lease, **data
        )
        self.noted(ctx, data)

    async def once(
        self, ctx: RunContext, moment: Announcement, *, outcome: str, text: str = ""
    ) -> bool:
        """Announce ``moment`` as ``__call__`` does, unless the run's audit trail has a
        ``run.announced`` row of it already (delivered or not): a retried event or job, taken
        up after a crash, does not say it twice. True when it was announced here. One read
        of the audit log, only when the rule asks for ``moment``."""
        if not self._asks(ctx, moment):
            return False
        assert ctx.run_id is not None
        if await self._deps.store.was_announced(ctx.run_id, moment.value):
            ctx.log.debug("announced already", moment=moment.value)
            return False
        await self(ctx, moment, outcome=outcome, text=text)
        return True

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
    """The alert's summary (or description) on one line: the message's lines are the
    service's own, and an annotation's break wrote one that read as such."""
    annotations: Any = alert.annotations
    return one_line(str(annotations.get("summary") or annotations.get("description") or ""))
