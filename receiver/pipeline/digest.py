"""Sending refusal digests: when a rule's digest window ends, one message tells its channel how
many more of its runs were refused, by which guards, on how many targets (a storm, issue 12).

The refusals are folded by the announcer (``Announcer.folded``) into windows in Redis
(``receiver.guards.digest_windows``); ``DigestSender.flush`` sends the digests whose window
ended, and ``serve`` calls it every ``DIGEST_POLL_S`` in each replica (``DigestSender.run``).

Exactly once, as far as it can be: a window that ended is claimed by the one replica whose
Redis script closes it, for a lease of ``DIGEST_LEASE_S``. The sender sends it, audits it
(``announcements.digest``, with the counts and whether it was delivered), then lets Redis drop
it. A sender that dies after its claim leaves the digest in Redis, and once the lease has
passed another replica (or this one, restarted) takes it again: a digest is never lost to a
crash. One that died after the audit row is not sent again (the row is looked for first); one
that died between the message and the audit row is sent twice, the price of never losing one.
A digest that the channel does not take is audited as not delivered and not retried, as a
run's announcement is not.
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
from receiver.store import DIGEST_AUDIT, StoreUnavailable
from remediations.notify.message import Event, Message
from remediations.notify.notifier import Notifier

__all__ = ["DIGEST_LEASE_S", "DIGEST_POLL_S", "DigestSender"]

# How often each replica looks for digests to send (seconds): a digest goes out at most this
# long after its window ends.
DIGEST_POLL_S = 2.0
# How long a claimed digest is its sender's (seconds): longer than a message can take (the
# notifier's 3 attempts of 5 s and their waits) and the audit row, so that a live sender is
# not raced; once it has passed, another replica takes the digest again.
DIGEST_LEASE_S = 120.0
# At most one warning per this many seconds while Redis or PostgreSQL cannot be asked.
_DOWN_LOG_EVERY_S = 60.0


class DigestSender:
    """Sends the digests of ended refusal windows to their channels, audited once each.

    ``flush()`` sends what is due now and says how many digests it handled; ``run()`` calls it
    for ever (a background task of ``serve``). ``log``: a structlog logger."""

    def __init__(self, deps: Deps, log: Any) -> None:
        self._deps = deps
        self._log = log
        self._down = Throttle(_DOWN_LOG_EVERY_S)

    async def flush(self) -> int:
        """Claim the digests due now and send each (``DigestSender`` docstring); how many were
        handled, delivered or not. Raises GuardUnavailable or GuardError when Redis cannot be
        asked, StoreUnavailable when the audit cannot be written: what is claimed and not done
        is taken again once its lease has passed."""
        windows = self._deps.guards.digests
        handled = 0
        for entry, digest in await windows.due(DIGEST_LEASE_S):
            if digest is None:
                # Not ours to read (written by another version?): dropped, loudly, rather
                # than taken again every lease for a day.
                self._log.error("unreadable refusal digest dropped", entry=entry[:500])
            elif await self._deps.store.digest_audited(digest.id, digest.start):
                self._log.info("refusal digest already audited", window=digest.id)
            else:
                await self._send(digest)
            await windows.done(entry)
            handled += 1
        return handled

    async def _send(self, digest: Digest) -> None:
        delivered, detail = await self._deliver(digest)
        data = digest_audit(digest, delivered=delivered, detail=detail)
        await self._deps.store.append_audit(DIGEST_AUDIT, data=data)
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
        """Send ``digest`` to its channel: (delivered, the channel's answer or why not)."""
        clients = self._deps.clients
        if not clients.has("notify"):
            return False, "no notification channels are configured (notify.channels)"
        notifier: Notifier = clients.get("notify")
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
        delivery = await notifier.send(digest.channel, message)
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
