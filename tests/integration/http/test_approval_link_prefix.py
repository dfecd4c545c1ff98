"""The approval link behind a path prefix, in a real browser (Debian's headless Chromium over
CDP) through a real reverse proxy: deploy/README.md, section 9, has the ingress strip the prefix
with nothing configured for it, and ``REMEDIATOR_EXTERNAL_URL`` names it, so the link is
``https://ops.example/remediator/approve/<token>``. The page's session cookie (the CSRF
token is bound to it) was set for ``Path=/approve/``: the browser kept it for a path it never
opens and sent no cookie with the decision, refused as a form from elsewhere."""

from __future__ import annotations

from urllib.parse import urlsplit

from receiver.model import ApprovalState
from tests.integration.http.conftest import MakeEdge
from tests.support.approvals import OPERATORS
from tests.support.cdp import Page
from tests.support.prefix import PrefixProxy


async def test_a_decision_on_the_page_behind_a_path_prefix_is_taken(
    make_edge: MakeEdge, prefix_proxy: PrefixProxy, browser: Page
) -> None:
    edge = await make_edge()
    prefix_proxy.upstream = edge.base
    # Links and the same-origin check name the address people use: the proxy's, with its prefix.
    edge.env.desk.public_url = prefix_proxy.base
    _, approval = await edge.env.pending_run()
    link = edge.env.desk.link(approval)
    assert link is not None
    assert urlsplit(link).path.startswith("/review/approve/")

    await browser.open(link)
    await browser.type_into("#operator_token", OPERATORS["alice"])
    loaded = browser.expect("Page.loadEventFired")
    await browser.click("#approve")
    await loaded
    text = await browser.text()
    assert "Approved by alice" in text, text
    decided = await edge.env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by) == (ApprovalState.APPROVED, "alice")
