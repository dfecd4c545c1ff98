"""``remediator serve`` killed (SIGKILL) around an approval, then started again on the same
stores and port: the project promises that a crash loses nothing accepted and that a retry
never changes what is done. A real service (subprocess) on the test PostgreSQL and Redis; its
one step an ``http.call`` to a local server that counts each POST it receives, so "the step
acted once" is counted where the step lands (tests/support/approval_crash.py).

1. Killed while its run waits for approval (the notice sent, nobody decided): after the
   restart the link sent before the crash still works, once; the step acts once; the run's
   record and the audit chain are whole.
2. Killed after the approver's POST was answered 200: before the step began (its run's
   admission held on its way to Redis), the step acts once after the restart; while it acts
   (its POST received, not answered), it is not sent again (README, "A retry never changes what
   is done": an ``http.call`` that may have acted is recorded ``interrupted`` and the run ends
   ``failed``). Either way the run ends once.
3. The link used while the service is down (connection refused), then again after the restart:
   it works then, once.
4. The approval expires while the service is down: after the restart the run ends ``expired``
   (its ``resume_run`` job, due at the expiry), nothing acts, and the link answers 410; the
   decision sent from it is audited as refused (before, the link's own expiry refused it
   before anyone was asked who sent it, so no ``approval.refused`` row said who tried).
5. Killed after the approval was stored, before its request notice was answered: after the
   restart the approvers are told (the notice with its link), and the link works once. Before,
   the pass taken up again found the approval pending and parked the run on it without a word:
   nobody was told, and it expired unseen.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio

from tests.support.approval_crash import (
    CSRF,
    Desk,
    LinkClient,
    Peer,
    desk,
    fresh_session,
    running_peer,
)
from tests.support.polling import current, eventually
from tests.support.relay import HeldRelay, through

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def _awaiting(served: Desk, session: aiohttp.ClientSession) -> dict[str, Any]:
    return await eventually(
        lambda: served.only_run(session),
        lambda run: run["outcome"] == "awaiting_approval",
        what="the run parked awaiting approval",
    )


async def _asked(served: Desk, peer: Peer, session: aiohttp.ClientSession) -> LinkClient:
    """Post the alert; the client of the approval link the request notice brought, once the
    run waits for the decision."""
    await served.post_alert(session)
    browser = LinkClient(session, await peer.request_link(), served.url)
    await _awaiting(served, session)
    return browser


async def _approvals(served: Desk, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
    return list((await served.api(session, "/api/v1/approvals"))["approvals"])


def _endings(run: dict[str, Any]) -> list[str]:
    """The outcomes the run's audit trail ended it with (not its passing ``running`` and
    ``awaiting_approval``): one, when it ended once."""
    passing = ("pending", "running", "awaiting_approval")
    outcomes = [row["data"]["outcome"] for row in run["audit"] if row["kind"] == "run.outcome"]
    return [o for o in outcomes if o not in passing]


def _run_steps(run: dict[str, Any]) -> list[tuple[int, str]]:
    return [(s["idx"], s["outcome"]) for s in run["steps"] if s["phase"] == "run"]


def _approved_and_acted_once(
    served: Desk, run: dict[str, Any], approvals: list[dict[str, Any]], called: list[object]
) -> None:
    """The run succeeded, its one step ok; the endpoint got the step's one POST; the one
    approval was alice's."""
    assert (run["outcome"], _run_steps(run)) == ("succeeded", [(0, "ok")]), served.log()
    assert called == [{"said": "crash around an approval"}]
    assert [(a["state"], a["decided_by"]) for a in approvals] == [("approved", "alice")]


async def _approve_once(served: Desk, browser: LinkClient) -> None:
    """Approve on the link's page (200), and a second POST of the same form is refused (409)
    saying who decided."""
    csrf = await browser.csrf()
    status, html = await browser.approve(csrf, served.operator_token)
    assert status == 200, html
    assert "Approved by alice" in html, html
    status, html = await browser.approve(csrf, served.operator_token)
    assert status == 409, html
    assert "already approved by alice" in html, html


async def test_killed_while_awaiting_approval_the_link_works_once_after_the_restart(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        running_peer() as peer,
        desk(tmp_path, database_url=database_url, redis_url=redis_url, peer=peer) as served,
        fresh_session() as session,
    ):
        await served.start()
        await served.post_alert(session)
        link = await peer.request_link()
        before = await _awaiting(served, session)

        served.kill()
        await served.start()

        assert (await _awaiting(served, session))["id"] == before["id"]
        await _approve_once(served, LinkClient(session, link, served.url))
        run = await served.run_ended(session)
        approvals = await _approvals(served, session)
        await served.audit_verified()
    _approved_and_acted_once(served, run, approvals, peer.called)
    assert peer.kinds().count("approval.requested") == 1, peer.kinds()
    assert _endings(run) == ["succeeded"], run["audit"]


async def test_killed_while_the_approved_step_acts_it_is_not_sent_again(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        running_peer() as peer,
        desk(tmp_path, database_url=database_url, redis_url=redis_url, peer=peer) as served,
        fresh_session() as session,
    ):
        await served.start()
        browser = await _asked(served, peer, session)
        peer.hold = asyncio.Event()  # the endpoint takes the POST and does not answer yet
        status, html = await browser.approve(await browser.csrf(), served.operator_token)
        assert status == 200, html
        await eventually(current(lambda: peer.called), what="the step's POST")

        served.kill()  # the POST reached the endpoint; its answer never comes back
        peer.hold.set()
        await served.start()

        run = await served.run_ended(session)
        approvals = await _approvals(served, session)
        status, html = await browser.approve(await _csrf_or_none(browser), served.operator_token)
        await served.audit_verified()
    assert peer.called == [{"said": "crash around an approval"}], "the step was sent twice"
    assert (run["outcome"], _run_steps(run)) == ("failed", [(0, "interrupted")]), served.log()
    assert _endings(run) == ["failed"], run["audit"]
    assert [(a["state"], a["decided_by"]) for a in approvals] == [("approved", "alice")]
    assert status == 409, html
    assert "already approved by alice" in html, html


async def _csrf_or_none(browser: LinkClient) -> str:
    """The form's CSRF token, or "" when the page has no form (the approval decided)."""
    _, html = await browser.open()
    found = CSRF.search(html)
    return found.group(1) if found else ""


async def test_the_link_used_while_the_service_is_down_works_once_after_the_restart(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        running_peer() as peer,
        desk(tmp_path, database_url=database_url, redis_url=redis_url, peer=peer) as served,
        fresh_session() as session,
    ):
        await served.start()
        browser = await _asked(served, peer, session)
        csrf = await browser.csrf()  # the page opened before the crash

        served.kill()
        with pytest.raises(aiohttp.ClientConnectorError):
            await browser.approve(csrf, served.operator_token)
        assert peer.called == []
        await served.start()

        # The same form sent again (the browser's retry), then a fresh page's once more.
        status, html = await browser.approve(csrf, served.operator_token)
        assert status == 200, html
        assert "Approved by alice" in html, html
        status, html = await browser.approve(await _csrf_or_none(browser), served.operator_token)
        assert status == 409, html
        assert "already approved by alice" in html, html
        run = await served.run_ended(session)
        approvals = await _approvals(served, session)
        await served.audit_verified()
    _approved_and_acted_once(served, run, approvals, peer.called)
    assert _endings(run) == ["succeeded"], run["audit"]


async def test_an_approval_that_expires_while_the_service_is_down_ends_its_run_expired(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        running_peer() as peer,
        desk(
            tmp_path, database_url=database_url, redis_url=redis_url, peer=peer, ttl="10s"
        ) as served,
        fresh_session() as session,
    ):
        await served.start()
        browser = await _asked(served, peer, session)
        csrf = await browser.csrf()
        (pending,) = await _approvals(served, session)

        served.kill()
        expires_at = datetime.fromisoformat(pending["expires_at"])
        assert pending["state"] == "pending", pending
        assert datetime.now(UTC) < expires_at, "expired before the kill: a longer ttl is needed"
        # Real time passing on purpose: the expiry is what the test is about.
        await eventually(
            current(lambda: datetime.now(UTC) > expires_at),
            timeout_s=60,
            interval_s=0.2,
            what="the approval's expiry, the service down",
        )
        await served.start()

        run = await served.run_ended(session)
        approvals = await _approvals(served, session)
        page = await browser.open()
        decision = await browser.approve(csrf, served.operator_token)
        refusals = [r["data"] for r in (await served.only_run(session))["audit"]]
        await served.audit_verified()
    assert (run["outcome"], _run_steps(run)) == ("expired", [(0, "expired")]), served.log()
    assert _endings(run) == ["expired"], run["audit"]
    assert peer.called == [], "an expired approval's step acted"
    assert [a["state"] for a in approvals] == ["expired"]
    assert peer.kinds() == ["approval.requested", "approval.expired"]
    for status, html in (page, decision):
        assert status == 410, html
        assert "expired" in html, html
        assert "nothing was changed" in html, html
    # The decision sent from the expired link is refused, and audited as every refused one
    # is (README, "Approvals": who tried, how, from where and why not).
    refused = [d for d in refusals if d.get("decision") == "approve"]
    assert [(d["by"], d["channel"], d["why"].split(" at ")[0]) for d in refused] == [
        ("alice", "web", "this approval link expired")
    ], refusals


async def test_killed_after_the_approval_before_the_step_began_it_acts_once_after_the_restart(
    tmp_path: Path, database_url: str, redis_url: str, redis_client: redis.asyncio.Redis
) -> None:
    parts = urlsplit(redis_url)
    assert parts.hostname is not None
    assert parts.port is not None
    async with (
        HeldRelay(parts.hostname, parts.port) as relay,
        running_peer() as peer,
        desk(
            tmp_path, database_url=database_url, redis_url=through(redis_url, relay.port), peer=peer
        ) as served,
        fresh_session() as session,
    ):
        await served.start()
        browser = await _asked(served, peer, session)
        # Parked, the run gave its target lock back; the next command naming a lock is the
        # approved run's admission, which the relay holds: the step has not begun.
        await eventually(lambda: redis_client.keys("*lock:*"), lambda keys: not keys)
        relay.hold_from(b"lock:")
        status, html = await browser.approve(await browser.csrf(), served.operator_token)
        assert status == 200, html
        await asyncio.wait_for(relay.holding.wait(), 60)

        served.kill()
        relay.let_through()  # what it had sent reaches Redis after its death, as in flight
        assert peer.called == []
        await served.start()

        run = await served.run_ended(session)
        approvals = await _approvals(served, session)
        await served.audit_verified()
    _approved_and_acted_once(served, run, approvals, peer.called)
    assert _endings(run) == ["succeeded"], run["audit"]


async def test_killed_before_the_request_notice_was_answered_the_approvers_are_told(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        running_peer() as peer,
        desk(tmp_path, database_url=database_url, redis_url=redis_url, peer=peer) as served,
        fresh_session() as session,
    ):
        peer.notice_hold = asyncio.Event()
        await served.start()
        await served.post_alert(session)
        await eventually(current(lambda: peer.notices_seen), what="the request notice sent")
        served.kill()  # the approval is stored; its notice reached no one
        peer.notice_hold.set()
        await served.start()

        link = await peer.request_link()
        await _approve_once(served, LinkClient(session, link, served.url))
        run = await served.run_ended(session)
        approvals = await _approvals(served, session)
        await served.audit_verified()
    _approved_and_acted_once(served, run, approvals, peer.called)
