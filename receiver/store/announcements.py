"""What the run announcements did: one audit row per message, delivered or not.

A notification never fails a run, and one that did not go out must still be visible to a
reviewer: ``GET /api/v1/runs/{id}`` lists these rows in the run's audit trail.
"""

from __future__ import annotations

from typing import Any

from receiver.store.audit import append_in_tx
from receiver.store.database import Database
from receiver.store.errors import translate

__all__ = ["ANNOUNCED", "Announcements", "announced_data"]

# The audit kind of an announcement row.
ANNOUNCED = "run.announced"


def announced_data(*, event: str, channel: str, delivered: bool, detail: str) -> dict[str, Any]:
    """The data of a ``run.announced`` audit row: the moment, the channel, whether it went
    out, and the channel's answer or what went wrong (never the channel's URL)."""
    return {"event": event, "channel": channel, "delivered": delivered, "detail": detail}


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
    ) -> None:
        """Audit one announcement of ``event`` to ``channel``: delivered or not, and the
        channel's answer or what went wrong (never the channel's URL). ``fingerprint``: the
        run's alert. One statement, committed on its own (nothing else changes with it)."""
        data = announced_data(event=event, channel=channel, delivered=delivered, detail=detail)
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
