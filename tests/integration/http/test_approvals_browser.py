"""The confirmation page in a real browser (Debian's headless Chromium over CDP): a person sees
what will be done, to what, why, the alert's links, the preview and the expiry; deciding works
by clicking; and the page loads nothing from anywhere but the service itself."""

from __future__ import annotations

from receiver.model import ApprovalState, RunOutcome
from tests.integration.http.conftest import MakeEdge
from tests.support.approvals import OPERATORS, poke_labels
from tests.support.cdp import PLAIN_HTTP_HOST, Page
from tests.support.payloads import alert, notification

RUNBOOK = "https://runbooks.example/poke"


async def test_a_person_sees_the_step_and_approves_it_by_clicking(
    make_edge: MakeEdge, browser: Page
) -> None:
    edge = await make_edge()
    env = edge.env
    env.peer.value = 3
    annotations = {"summary": "Pokes are overdue on shop/api", "runbook_url": RUNBOOK}
    await env.harness.intake.accept(notification(alert(poke_labels(), annotations=annotations)))
    await env.harness.drain()
    run = await env.harness.only_run()
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None

    await browser.open(edge.base + edge.link(approval))
    shown = await browser.text()
    for needle in (
        "poke Deployment/shop/api once",  # what will be done
        "Deployment shop/api",  # to what
        "test.poke",
        "Poke",  # why: the alert
        "Pokes are overdue on shop/api",
        "Runbook",  # the alert's links
        RUNBOOK,
        '"value": 3',  # the preview: before ...
        '"value": 4',  # ... and after
        approval.expires_at.isoformat(timespec="seconds"),  # until when
        "Approve",
        "Reject",
    ):
        assert needle in shown, needle
    assert await browser.evaluate("document.querySelector('#links a').href") == RUNBOOK

    await browser.type_into("#operator_token", OPERATORS["alice"])
    await browser.type_into("#reason", "error rate says so")
    loaded = browser.expect("Page.loadEventFired")
    await browser.click("#approve")
    await loaded
    assert "Approved by alice" in await browser.text()
    assert await browser.evaluate("document.querySelector('#state').textContent") == "approved"

    decided = await env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by, decided.channel, decided.reason) == (
        ApprovalState.APPROVED,
        "alice",
        "web",
        "error rate says so",
    )
    await env.harness.drain()
    assert env.peer.pokes == 1
    assert (await env.harness.only_run()).outcome is RunOutcome.SUCCEEDED

    # Nothing but the page itself and its form post: no script, style, font or image from
    # anywhere, and nothing from the alert's links.
    assert browser.requested, "the browser made no request at all"
    assert all(url.startswith(edge.base + "/approve/") for url in browser.requested), (
        browser.requested
    )


async def test_deciding_works_on_a_page_served_over_http_at_another_address(
    make_edge: MakeEdge, browser: Page
) -> None:
    # Over http at an address that is not loopback (here a name the browser resolves to it),
    # the browser sends no Fetch Metadata. Under Referrer-Policy no-referrer it sent the page's
    # own form with Origin: null, and every decision made on the page was refused as another
    # site's ("the decision must come from this service's own page").
    edge = await make_edge()
    port = edge.client.make_url("").port
    edge.env.desk.public_url = f"http://{PLAIN_HTTP_HOST}:{port}"
    _, approval = await edge.env.pending_run()
    link = edge.env.desk.link(approval)
    assert link is not None
    await browser.open(link)
    await browser.type_into("#operator_token", OPERATORS["alice"])
    loaded = browser.expect("Page.loadEventFired")
    await browser.click("#approve")
    await loaded
    assert "Approved by alice" in await browser.text(), await browser.text()
    decided = await edge.env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by) == (ApprovalState.APPROVED, "alice")


async def test_rejecting_by_clicking_ends_the_run(make_edge: MakeEdge, browser: Page) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    await browser.open(edge.base + edge.link(approval))
    await browser.type_into("#operator_token", OPERATORS["bob"])
    loaded = browser.expect("Page.loadEventFired")
    await browser.click("#reject")
    await loaded
    assert "Rejected by bob" in await browser.text()
    assert (await edge.env.harness.only_run()).outcome is RunOutcome.REJECTED
    assert edge.env.peer.pokes == 0


async def test_a_long_preview_reads_on_the_page_without_scrolling_it_sideways(
    make_edge: MakeEdge, browser: Page
) -> None:
    # An http.call's preview holds the body it would send, an alert's annotation in it: one
    # line of thousands of characters. The page's Before/After grid took the line's width, the
    # After box ran off the page, and the person read what they approve by scrolling the
    # whole page sideways. Set into the page's own After box, as such a preview fills it.
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    await browser.open(edge.base + edge.link(approval))
    await browser.evaluate(
        "document.querySelector('#after').textContent = '{\"body\": \"' + 'S'.repeat(5000) + '\"}'"
    )
    width = await browser.evaluate("document.documentElement.scrollWidth")
    assert width <= await browser.evaluate("window.innerWidth")
    # All of it shows, wrapped: nothing is left in a box of its own to scroll.
    after = "document.querySelector('#after')"
    assert await browser.evaluate(f"{after}.scrollWidth <= {after}.clientWidth")
