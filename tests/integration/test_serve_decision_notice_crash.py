"""``remediator serve`` killed (SIGKILL) after an engineer rejected a step on the link's page,
while the channel had not yet answered the "rejected" notice: the decision had committed, and
with it the ``finish_end`` job that does, 30 s later, what the pass could not (README,
"Approvals", "Lifecycle"). Started again, the run stays ``rejected``, nothing acts, and the
approvers are told once (not "waiting" for good). A real service on the test PostgreSQL and
Redis (tests/support/approval_crash.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.support.approval_crash import LinkClient, desk, fresh_session, running_peer
from tests.support.polling import current, eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_killed_before_the_rejection_notice_was_answered_it_is_sent_after_the_restart(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        running_peer() as peer,
        desk(tmp_path, database_url=database_url, redis_url=redis_url, peer=peer) as served,
        fresh_session() as session,
    ):
        await served.start()
        await served.post_alert(session)
        browser = LinkClient(session, await peer.request_link(), served.url)
        csrf = await browser.csrf()
        seen = peer.notices_seen
        peer.notice_hold = asyncio.Event()
        decided = asyncio.create_task(browser.approve(csrf, served.operator_token, "reject"))
        await eventually(current(lambda: peer.notices_seen > seen), what="the rejection notice")
        served.kill()  # the rejection committed; its notice reached no one
        peer.notice_hold.set()
        with pytest.raises(aiohttp.ClientError):  # the page's answer, cut off by the kill
            await decided
        await served.start()

        notice = await eventually(
            current(lambda: [n for n in peer.notices if n["kind"] == "approval.rejected"]),
            what="the rejection notice after the restart",
        )
        run = await served.run_ended(session)
        await served.audit_verified()
    assert peer.called == []
    assert run["outcome"] == "rejected", served.log()
    assert len(notice) == 1, peer.kinds()


async def test_killed_before_the_approval_notice_was_answered_it_is_sent_after_the_restart(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    # Before, only the ends (expired, rejected, cancelled) were queued for their notice: an
    # "approved" notice lost here left the approvers' message saying "waiting" while the step
    # ran, and nobody could tell from the channel that someone had said yes.
    async with (
        running_peer() as peer,
        desk(tmp_path, database_url=database_url, redis_url=redis_url, peer=peer) as served,
        fresh_session() as session,
    ):
        await served.start()
        await served.post_alert(session)
        browser = LinkClient(session, await peer.request_link(), served.url)
        csrf = await browser.csrf()
        seen = peer.notices_seen
        peer.notice_hold = asyncio.Event()
        decided = asyncio.create_task(browser.approve(csrf, served.operator_token, "approve"))
        await eventually(current(lambda: peer.notices_seen > seen), what="the approval notice")
        served.kill()  # the approval committed; its notice reached no one
        peer.notice_hold.set()
        with pytest.raises(aiohttp.ClientError):  # the page's answer, cut off by the kill
            await decided
        await served.start()

        notice = await eventually(
            current(lambda: [n for n in peer.notices if n["kind"] == "approval.approved"]),
            what="the approval notice after the restart",
        )
        run = await served.run_ended(session)
        await served.audit_verified()
    assert len(peer.called) == 1, served.log()  # the approved step acted, once
    assert run["outcome"] == "succeeded", served.log()
    assert len(notice) == 1, peer.kinds()
