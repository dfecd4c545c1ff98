"""What the run announcements did: one audit row per message, delivered or not.

A notification never fails a run, and one that did not go out must still be visible to a
reviewer: ``GET /api/v1/runs/{id}`` lists these rows in the run's audit trail.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from receiver.store.audit import append_in_tx
from receiver.store.database import Database
from receiver.store.errors import translate

__all__ = ["ANNOUNCED", "DIGEST_AUDIT", "Announcements", "announced_data"]

# The audit kind of an announcement row.
ANNOUNCED = "run.announced"
# The audit kind of a refusal digest (receiver.refusal_digest): one row per window, no run.
DIGEST_AUDIT = "announcements.digest"
# How far before a window's start its digest's row is looked for: the row is stamped by the
# store's clock, the window by Redis' (or a test's), and the bound only lets the index of
# service rows by time (audit_log_service_at) be used.
_DIGEST_CLOCK_SLACK = timedelta(days=1)


def announced_data(
    *, event: str, channel: str, delivered: bool, detail: str, digest: str | None = None
) -> dict[str, Any]:
    """The data of a ``run.announced`` audit row: the moment, the channel, whether it went
    out, and the channel's answer or what went wrong (never the channel's URL); ``digest``,
    for a refusal folded into a refusal digest instead of sent, the window's id."""
    data: dict[str, Any] = {
        "event": event,
        "channel": channel,
        "delivered": delivered,
        "detail": detail,
    }
    if digest is not None:
        data["digest"] = digest
    return data


class Announcements(Database):
    """Announcements of runs (mixin of ``Store``)."""

    async def record_announcement(
        self,
        run_id: str,
        *,
        fingerprint: str | None,
        event: str,
        channel: str,
        delivered: bool,
        detail: str,
        digest: str | None = None,
    ) -> None:
        """Audit one announcement of ``event`` to ``channel``: delivered or not, and the
        channel's answer or what went wrong (never the channel's URL); ``digest``: the window
        of the refusal digest it was folded into. ``fingerprint``: the run's alert. One
        statement, committed on its own (nothing else changes with it)."""
        data = announced_data(
            event=event, channel=channel, delivered=delivered, detail=detail, digest=digest
        )
        with translate():
            await append_in_tx(self._pool, ANNOUNCED, run_id, fingerprint, data)

    async def was_announced(self, run_id: str, event: str) -> bool:
        """Whether ``event`` of the run was announced already (delivered or not), so a job
        taken up again does not say it twice."""
        with translate():
            found = await self._pool.fetchval(
                """SELECT EXISTS (SELECT 1 FROM audit_log
                   WHERE run_id = $1::uuid AND kind = $2 AND data->>'event' = $3)""",
                run_id,
                ANNOUNCED,
                event,
            )
        return bool(found)

    async def digest_audited(self, window: str, start: datetime) -> bool:
        """Whether the digest of ``window`` (``refusal_digest.window_id``), which started at
        ``start``, is audited already: a sender that crashed after auditing it, before Redis
        let it go, must not have it audited (and sent) twice."""
        with translate():
            found = await self._pool.fetchval(
                """SELECT EXISTS (SELECT 1 FROM audit_log
                   WHERE run_id IS NULL AND at >= $1 AND kind = $2
                     AND data->>'window' = $3)""",
                start - _DIGEST_CLOCK_SLACK,
                DIGEST_AUDIT,
                window,
            )
        return bool(found)
