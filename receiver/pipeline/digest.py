"""Sending refusal digests: when a rule's digest window ends, one message tells its channel how
many more of its runs were refused, by which guards, on how many targets (a storm, issue 12).

The refusals are folded by the announcer (``Announcer.folded``) into windows in Redis
(``receiver.guards.digest_windows``); ``DigestSender.flush`` sends the digests whose window
ended, and ``serve`` calls it every ``DIGEST_POLL_S`` in each replica (``DigestSender.run``).

Once, as far as it can be. A window that ended is queued in Redis, and a sender claims each
digest on its own, just before it sends it, for a lease (``digest_lease_s``) longer than
everything it does with that one digest can take: look for its audit row (at most
``DIGEST_CHECK_S``; found, it is not sent again), send it (at most its channel's longest send,
``HttpPolicy.longest_s``, and cut there: the claim never outlives the send), audit it
(``announcements.digest``, with the counts and whether it was delivered; at most
``DIGEST_AUDIT_S``), then let Redis drop it. So a live sender keeps every digest it sends,
however many are due and however slow the channel: another replica only takes the ones nobody
holds, and two replicas flushing together share the queue, each digest sent by one of them.
A sender sends one digest to a channel at a time and the channels side by side (``claim``
leaves out the channels it is sending to): sent one after another, the digests of every
channel waited behind those of one that does not answer, a minute and more each.

What can still send a digest twice: a sender that dies (or whose audit row cannot be written,
PostgreSQL away) after the channel took the message and before the audit row committed; or a
sender that stalls, with its message on its way, past its lease (the process frozen or starved
for a minute or more). Then the digest is taken again once the lease has passed, no audit row
is found, and it is sent again: the price of never losing one to a crash. A digest that the
channel does not take, or that it does not answer within the bound, is audited as not delivered
and not retried, as a run's announcement is not (a message cut at the bound may still have
arrived: the detail says so).
"""

from __future__ import annotations

import asyncio
from typing import Any

from receiver.guards.policy import GuardError, GuardUnavailable
from receiver.log_limits import Throttle
from receiver.pipeline.context import Deps
from receiver.refusal_digest import (
    DIGEST_EVENT,
    Digest,
    digest_audit,
    digest_text,
    digest_title,
    runs_link,
)
from receiver.store import DIGEST_AUDIT, Store, StoreUnavailable
from remediations.notify.message import Event, Message
from remediations.notify.notifier import Notifier

__all__ = [
    "DIGEST_AUDIT_S",
    "DIGEST_CHECK_S",
    "DIGEST_POLL_S",
    "DigestSender",
    "digest_lease_s",
    "send_bound_s",
]

# How often each replica looks for digests to send (seconds): a digest goes out at most this
# long after its window ends.
DIGEST_POLL_S = 2.0
# The bounds of the store's two calls for one digest (seconds): the look for its audit row, and
# the row itself. Part of the lease, so short: a store that does not answer in time leaves the
# digest claimed, and taken again once its lease has passed.
DIGEST_CHECK_S = 10.0
DIGEST_AUDIT_S = 15.0
# Beyond those bounds and the send's: the Redis calls of one digest (claim, done), each bounded
# by the guards' timeout, and the event loop's own delays.
_LEASE_SLACK_S = 15.0
# The most digests one flush sends; the next flush, a poll later, goes on.
_MAX_PER_FLUSH = 32
# At most one warning per this many seconds while Redis or PostgreSQL cannot be asked.
_DOWN_LOG_EVERY_S = 60.0


def send_bound_s(notifier: Notifier | None, channel: str) -> float:
    """How long a digest's send to ``channel`` may take (seconds): the channel's longest send
    (``HttpPolicy.longest_s``), 0 when it is not configured (nothing is sent)."""
    if notifier is None or channel not in notifier.channels:
        return 0.0
    return notifier.channels[channel].policy.longest_s


def digest_lease_s(notifier: Notifier | None) -> float:
    """How long one claimed digest is its sender's (seconds): longer than all it does with it,
    the look for its audit row, the send to the slowest configured channel, the audit row and
    the Redis calls (``DigestSender`` docstring). With the default channel policy (3 attempts
    of 5 s, waits of up to 30 s) 115 s. Once it has passed another replica takes it again."""
    names = notifier.channels if notifier is not None else ()
    longest = max((send_bound_s(notifier, name) for name in names), default=0.0)
    return DIGEST_CHECK_S + longest + DIGEST_AUDIT_S + _LEASE_SLACK_S


class DigestSender:
    """Sends the digests of ended refusal windows to their channels, audited once each.

    ``flush()`` sends what is due now and says how many digests it handled; ``run()`` calls it
    for ever (a background task of ``serve``). ``log``: a structlog logger."""

    def __init__(self, deps: Deps, log: Any) -> None:
        self._deps = deps
        self._log = log
        self._down = Throttle(_DOWN_LOG_EVERY_S)
        # The look for a digest's audit row must end within its lease (as its row does:
        # ``append_audit(timeout_s=...)``); made at the first flush, not for every pipeline.
        self._checks: Store | None = None

    def _notifier(self) -> Notifier | None:
        clients = self._deps.clients
        return clients.get("notify") if clients.has("notify") else None

    @property
    def lease_s(self) -> float:
        """How long each digest this sender claims is its own (``digest_lease_s``)."""
        return digest_lease_s(self._notifier())

    async def flush(self) -> int:
        """Send the digests due now, claiming each just before it is sent (``DigestSender``
        docstring), at most 32: one at a time to each channel, the channels side by side (a
        channel that does not answer holds up only its own digests), and while any is sent,
        those that come due meanwhile, looked for every ``DIGEST_POLL_S``. How many were handled,
        delivered or not, once every one is. Raises GuardUnavailable or GuardError when Redis
        cannot be asked, StoreUnavailable when the audit cannot be looked for or written (the
        first such error, once the digests claimed are handled): a digest claimed then and
        not finished is taken again once its lease has passed."""
        windows = self._deps.guards.digests
        # The digest being handled to each channel ("" for one that cannot be read).
        sending: dict[asyncio.Task[None], str] = {}
        handled = 0
        failure: BaseException | None = None
        try:
            while True:
                claimed = None
                if handled < _MAX_PER_FLUSH and failure is None:
                    try:
                        busy = {channel for channel in sending.values() if channel}
                        claimed = await windows.claim(self.lease_s, busy)
                    except (GuardUnavailable, GuardError) as exc:
                        failure = exc
                if claimed is not None:
                    entry, digest = claimed
                    task = asyncio.create_task(self._handle(entry, digest))
                    sending[task] = digest.channel if digest is not None else ""
                    handled += 1
                    continue
                if not sending:
                    break
                # A send ended (its channel's next digest may be claimed), or a poll passed (a
                # window that ended meanwhile is claimed, not left behind a slow channel).
                ended, _ = await asyncio.wait(
                    sending, timeout=DIGEST_POLL_S, return_when=asyncio.FIRST_COMPLETED
                )
                for task in ended:
                    del sending[task]
                    if failure is None and not task.cancelled():
                        failure = task.exception()
        except asyncio.CancelledError:
            # The service stops: the sends are cut, as a send in progress always was (each
            # digest is taken again once its lease has passed, unless it was audited).
            for task in sending:
                task.cancel()
            raise
        if failure is not None:
            raise failure
        return handled

    async def _handle(self, entry: str, digest: Digest | None) -> None:
        """Send one claimed digest unless it was audited already, then let Redis drop it."""
        if digest is None:
            # Not ours to read (written by another version?): dropped, loudly, rather than
            # taken again every lease for a day.
            self._log.error("unreadable refusal digest dropped", entry=entry[:500])
        elif await self._audited(digest):
            self._log.info("refusal digest already audited", window=digest.id)
        else:
            await self._send(digest)
        await self._deps.guards.digests.done(entry)

    async def _audited(self, digest: Digest) -> bool:
        if self._checks is None:
            self._checks = self._deps.store.bounded(DIGEST_CHECK_S)
        return await self._checks.digest_audited(digest.id, digest.start)

    async def _send(self, digest: Digest) -> None:
        delivered, detail = await self._deliver(digest)
        data = digest_audit(digest, delivered=delivered, detail=detail)
        await self._deps.store.append_audit(DIGEST_AUDIT, data=data, timeout_s=DIGEST_AUDIT_S)
        self._deps.metrics.announced(DIGEST_EVENT, delivered)
        log = self._log.info if delivered else self._log.warning
        log(
            "refusal digest sent" if delivered else "refusal digest not delivered",
            window=digest.id,
            rule=digest.rule,
            channel=digest.channel,
            refused=digest.refused,
            by_guard=dict(digest.by_guard),
            targets=digest.targets,
            detail=detail,
        )

    async def _deliver(self, digest: Digest) -> tuple[bool, str]:
        """Send ``digest`` to its channel: (delivered, the channel's answer or why not). Cut
        at the channel's longest send (``send_bound_s``), which the lease was sized for."""
        notifier = self._notifier()
        if notifier is None:
            return False, "no notification channels are configured (notify.channels)"
        unknown = notifier.unknown(digest.channel)
        if unknown is not None:
            return False, unknown
        link = runs_link(notifier.external_url, digest)
        message = Message(
            event=Event.REFUSED_DIGEST,
            title=digest_title(digest),
            text=digest_text(digest),
            rule=digest.rule,
            outcome="refused",
            dry_run=self._deps.settings.dry_run,
            links={"runs": link} if link else {},
        )
        bound = send_bound_s(notifier, digest.channel)
        try:
            # The policy's own timeouts end the send before this; the bound only makes sure
            # (a DNS lookup or a TLS handshake outside them), so the claim never outlives it.
            async with asyncio.timeout(bound):
                delivery = await notifier.send(digest.channel, message)
        except TimeoutError:
            return False, f"no answer within {bound:g}s; given up (the channel may have it)"
        return delivery.ok, delivery.detail

    async def run(self, every_s: float = DIGEST_POLL_S) -> None:
        """Flush every ``every_s`` seconds until cancelled. Redis or PostgreSQL down is
        logged (at most once a minute) and tried again at the next turn; nothing ends it."""
        while True:
            try:
                await self.flush()
            except (GuardUnavailable, GuardError, StoreUnavailable) as exc:
                held_back = self._down.ready()
                if held_back is not None:
                    self._log.warning(
                        "refusal digests wait: cannot be claimed, audited or let go now",
                        error=str(exc),
                        not_logged_since_last=held_back,
                    )
            except Exception:
                self._log.exception("sending refusal digests failed")
            await asyncio.sleep(every_s)
