"""``remediator serve`` killed (SIGKILL) after an engineer rejected or approved a step on the
link's page, while the channel had not yet answered the decision's notice: the decision had
committed, and with it the ``finish_end`` job that does, 30 s later, what the pass could not
(README, "Approvals", "Lifecycle"). Started again, a rejected run stays ``rejected`` and
nothing acts, an approved one's step acts once, and the approvers are told once (not
"waiting" for good). A real service on the test PostgreSQL and Redis
(tests/support/approval_crash.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.support.approval_crash import LinkClient, desk, fresh_session, running_peer
from tests.support.polling import current, eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.parametrize(
    ("decision", "outcome", "acted"),
    [
        ("reject", "rejected", 0),
        # Before, only the ends (expired, rejected, cancelled) were queued for their notice: an
        # "approved" notice lost here left the approvers' message saying "waiting" while the
        # step ran, and nobody could tell from the channel that someone had said yes.
        ("approve", "succeeded", 1),
    ],
)
async def test_killed_before_the_decision_notice_was_answered_it_is_sent_after_the_restart(
    tmp_path: Path, database_url: str, redis_url: str, decision: str, outcome: str, acted: int
) -> None:
    kind = "approval.rejected" if decision == "reject" else "approval.approved"
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
        decided = asyncio.create_task(browser.approve(csrf, served.operator_token, decision))
        await eventually(current(lambda: peer.notices_seen > seen), what="the decision's notice")
        served.kill()  # the decision committed; its notice reached no one
        peer.notice_hold.set()
        with pytest.raises(aiohttp.ClientError):  # the page's answer, cut off by the kill
            await decided
        await served.start()

        notice = await eventually(
            current(lambda: [n for n in peer.notices if n["kind"] == kind]),
            what="the decision's notice after the restart",
        )
        run = await served.run_ended(session)
        await served.audit_verified()
    assert len(peer.called) == acted, served.log()  # an approved step acted, once
    assert run["outcome"] == outcome, served.log()
    assert len(notice) == 1, peer.kinds()
