"""What the run announcements did: one audit row per message, delivered or not.

A notification never fails a run, and one that did not go out must still be visible to a
reviewer: ``GET /api/v1/runs/{id}`` lists these rows in the run's audit trail.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from receiver.audit_folds import ANNOUNCED_KEY, CREATED
from receiver.store.audit import audit_insert_sql
from receiver.store.canonical import audit_data
from receiver.store.database import Database
from receiver.store.errors import translate
from receiver.store.fence import LeaseFence, check_held, fence_args, held_sql

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
        lease: LeaseFence | None = None,
    ) -> None:
        """Audit one announcement of ``event`` to ``channel``: delivered or not, and the
        channel's answer or what went wrong (never the channel's URL); ``digest``: the window
        of the refusal digest it was folded into. ``fingerprint``: the run's alert. One
        statement, committed on its own (nothing else changes with it). ``lease``: the claim
        it is made under; LeaseLost, nothing written, once its owner lost it (fence.py)."""
        data = audit_data(
            announced_data(
                event=event, channel=channel, delivered=delivered, detail=detail, digest=digest
            )
        )
        with translate():
            ok = await self._pool.fetchval(
                f"""WITH held AS ({held_sql("$4", "$5", "$6", "$7")}), audited AS (
                    {
                    audit_insert_sql(
                        "(SELECT FROM held WHERE held.ok) AS go",
                        kind=f"'{ANNOUNCED}'",
                        run_id="$1::uuid",
                        fingerprint="$2::text",
                        data="$3::text",
                    )
                }
                )
                SELECT ok FROM held""",
                run_id,
                fingerprint,
                data,
                *fence_args(lease),
            )
        check_held(ok, lease, f"the announcement {event} of run {run_id}")

    async def was_announced(self, run_id: str, event: str) -> bool:
        """Whether ``event`` of the run was announced already (delivered or not), so a job
        taken up again does not say it twice: a ``run.announced`` row, or the announcement a
        refused run's ``run.created`` row holds (receiver/audit_folds.py)."""
        with translate():
            found = await self._pool.fetchval(
                f"""SELECT EXISTS (SELECT 1 FROM audit_log
                   WHERE run_id = $1::uuid
                     AND (kind = $2 AND data->>'event' = $3
                          OR kind = '{CREATED}' AND data->'{ANNOUNCED_KEY}'->>'event' = $3))""",
                run_id,
                ANNOUNCED,
                event,
            )
        return bool(found)

    async def approval_notice_sent(self, run_id: str, approval_id: str, notice: str) -> bool:
        """Whether ``notice`` (``"approval cancelled"``, as the desk's ``notification.sent``
        rows name it) of approval ``approval_id`` of run ``run_id`` was delivered already, so
        a job taken up again does not send it twice (pipeline/finish_end.py)."""
        with translate():
            found = await self._pool.fetchval(
                """SELECT EXISTS (SELECT 1 FROM audit_log
                   WHERE run_id = $1::uuid AND kind = 'notification.sent'
                     AND data->>'approval_id' = $2 AND data->>'notice' = $3)""",
                run_id,
                approval_id,
                notice,
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
