"""The review pages in a real browser (Debian's headless Chromium over CDP), served under a
path prefix by a real reverse proxy: a reviewer signs in with an operator token and reads what
the scripted storm did and did not do (``tests.support.review``), asserted on the DOM. Every
page's screenshot is kept; the directory is printed (``REMEDIATOR_TEST_ARTIFACTS`` chooses it,
else the test's tmp_path)."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from receiver.approvals.identity import IdentityResolver
from receiver.review.outcomes import present
from receiver.store import Store
from tests.support.approvals import MakeApprovalEnv
from tests.support.cdp import Page
from tests.support.http import OPERATOR_TOKEN, AiohttpClient, Client, default_settings
from tests.support.pipeline import MakeHarness
from tests.support.prefix import PrefixProxy
from tests.support.review import HOSTILE_LABEL, STORM_RULES, VERIFIED, Storm, play_storm
from tests.support.review_app import review_app

Shoot = Callable[[Page, str], Awaitable[None]]


@pytest.fixture
def shoot(tmp_path: Path, request: pytest.FixtureRequest) -> Shoot:
    """Save a screenshot of the page as ``<test>-<name>.png``; prints where."""
    root = Path(os.environ.get("REMEDIATOR_TEST_ARTIFACTS") or tmp_path) / "review-pages"
    root.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of {request.node.name}: {root}")

    async def save(page: Page, name: str) -> None:
        shot = await page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path = root / f"{request.node.name}-{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.stat().st_size > 1000, path

    return save


@dataclass
class Reviewed:
    storm: Storm
    client: Client
    proxy: PrefixProxy


@pytest.fixture
async def reviewed(
    approval_env: MakeApprovalEnv,
    aiohttp_client: AiohttpClient,
    store: Store,
    prefix_proxy: PrefixProxy,
) -> Reviewed:
    env = await approval_env(rules=STORM_RULES)
    storm = await play_storm(env)
    client = await aiohttp_client(review_app(store, default_settings()))
    prefix_proxy.upstream = str(client.make_url("")).rstrip("/")
    return Reviewed(storm, client, prefix_proxy)


async def _open(page: Page, url: str) -> None:
    await page.open(url)


async def _click_and_wait(page: Page, selector: str) -> None:
    loaded = page.expect("Page.loadEventFired")
    await page.click(selector)
    await loaded


async def _texts(page: Page, selector: str) -> list[str]:
    found = await page.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(selector)}), e => e.textContent.trim())"
    )
    return [str(t) for t in found]


async def test_a_reviewer_signs_in_and_reads_the_storm(
    reviewed: Reviewed, browser: Page, shoot: Shoot
) -> None:
    base, storm = reviewed.proxy.base, reviewed.storm
    await _open(browser, f"{base}/runs")
    # Not signed in: the login form, and nothing of the runs.
    assert await browser.evaluate("document.querySelector('#operator_token') !== null")
    assert await browser.evaluate("document.querySelector('#runs') === null")
    assert storm.runs["api"].id not in await browser.evaluate("document.documentElement.outerHTML")
    await shoot(browser, "1-login")

    await browser.type_into("#operator_token", OPERATOR_TOKEN)
    await _click_and_wait(browser, "#sign-in")
    assert await browser.evaluate("location.href") == f"{base}/runs"
    assert await _texts(browser, "#user") == ["alice"]
    rows = await browser.evaluate("document.querySelectorAll('#runs tr.run').length")
    assert rows == 7
    hrefs = await browser.evaluate(
        "Array.from(document.querySelectorAll('#runs tr.run a'), a => a.href)"
    )
    assert sorted(hrefs) == sorted(f"{base}/runs/{r.id}" for r in storm.runs.values())
    await shoot(browser, "2-runs")

    # One run's timeline: the alert, the rule, guards passed, the approval asked, notified and
    # given, the step with before and after, the verification and the resolution.
    api = storm.runs["api"]
    await _click_and_wait(browser, f"tr.run[data-run='{api.id}'] a")
    assert await _texts(browser, "#outcome") == [present(VERIFIED).label]
    kinds = await browser.evaluate(
        "Array.from(document.querySelectorAll('#timeline li'), li => li.dataset.kind)"
    )
    assert kinds == [
        "alert",
        "matched",
        "guard-pass",
        "approval-request",
        "notify",
        "held",
        "approval-decision",
        "notify",
        "guard-pass",
        "step",
        "verify",
        "resolved",
    ]
    titles = await _texts(browser, "#timeline li .title")
    assert titles[1] == "Rule restart-web matched: test.poke planned"
    assert titles[2] == "Guards passed: pause, namespace, rate, breaker, lock"
    assert titles[4] == "Notification sent: approval requested to ops"
    assert titles[6] == "Approved by alice via api (step 1)"
    assert titles[9] == "Step 1: test.poke ok"
    assert titles[11].startswith("Alert resolved at ")
    details = await _texts(browser, "#timeline li .detail")
    assert "time to resolve 1m35s" in details
    assert await _texts(browser, "#timeline li[data-kind=step] pre.before") == [
        '{\n  "value": 0\n}'
    ]
    assert await _texts(browser, "#timeline li[data-kind=step] pre.after") == ['{\n  "value": 1\n}']
    gaps = await _texts(browser, "#timeline li .since-prev")
    assert len(gaps) == len(kinds) - 1
    assert all(g.startswith("+") for g in gaps)
    # The label with HTML in it is text on the page, not an element.
    assert HOSTILE_LABEL in await _texts(browser, "#alert dd.label-value")
    assert await browser.evaluate("document.querySelectorAll('img').length") == 0
    assert str(await browser.evaluate("document.title")).startswith("Run ")
    links = await browser.evaluate("Array.from(document.querySelectorAll('#links a'), a => a.href)")
    assert links == ["https://runbooks.example/web-down"]
    await shoot(browser, "3-run")

    # The incident: every run on one timeline, and what was not done, with why.
    await _click_and_wait(browser, "#incident-link")
    assert (await browser.evaluate("location.pathname")).startswith("/review/incidents/g-")
    assert await browser.evaluate("document.querySelectorAll('#runs tr.run').length") == 7
    guards = await browser.evaluate(
        "Array.from(document.querySelectorAll('#not-done tr.refusal'), r => r.dataset.guard)"
    )
    assert guards == ["rate", "rate"]
    unapproved = await browser.evaluate(
        "Array.from(document.querySelectorAll('#not-done tr.not-approved'), r => r.dataset.state)"
    )
    assert unapproved == ["rejected", "expired"]
    skipped = await _texts(browser, "#not-done tr.skipped")
    assert len(skipped) == 1
    assert "restart-web" in skipped[0]
    assert "namespace 'kube-system' is not allowed" in skipped[0]
    unmatched = await _texts(browser, "#not-done tr.unmatched")
    assert len(unmatched) == 1
    assert "no rule matches" in unmatched[0]
    runs_on_timeline = await browser.evaluate(
        "new Set(Array.from(document.querySelectorAll('#timeline li[data-run]'),"
        " li => li.dataset.run)).size"
    )
    assert runs_on_timeline == 7
    timeline_kinds = set(
        await browser.evaluate(
            "Array.from(document.querySelectorAll('#timeline li'), li => li.dataset.kind)"
        )
    )
    assert {"guard-refuse", "skipped", "unmatched", "verify-failed", "outcome"} <= timeline_kinds
    refused = await _texts(browser, "#timeline li[data-kind=guard-refuse] .detail")
    assert all("would pass at" in text for text in refused)
    # The unmatched alert's runbook link is javascript: it is not a link at all.
    assert (
        await browser.evaluate("document.querySelectorAll('a[href^=\"javascript\"]').length") == 0
    )
    await shoot(browser, "4-incident")

    await _click_and_wait(browser, "#markdown")
    markdown = await browser.text()
    assert markdown.startswith("# Remediation report: ")
    assert "| restart-web | 7 | 66.7% | 33.3% | 0 | 2m35s | 3m23s | rate 2 | 3/1/1 |" in markdown

    # Nothing was loaded from anywhere but the proxy, under its prefix.
    assert browser.requested
    assert all(url.startswith(f"{base}/") for url in browser.requested), browser.requested

    await browser.open(f"{base}/runs")
    await _click_and_wait(browser, "#logout")
    assert await browser.evaluate("location.href") == f"{base}/login"
    await browser.open(f"{base}/runs")
    assert await browser.evaluate("document.querySelector('#runs') === null")


async def test_a_dry_run_is_marked_on_its_page(
    make_harness: MakeHarness,
    aiohttp_client: AiohttpClient,
    store: Store,
    browser: Page,
    shoot: Shoot,
) -> None:
    harness = await make_harness(
        """
rules:
  - name: restart
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
"""
    )
    await harness.deliver(
        {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    )
    run = await harness.only_run()
    client = await aiohttp_client(review_app(store, default_settings(), open_=True))
    await browser.open(str(client.make_url(f"/runs/{run.id}")))
    assert await _texts(browser, "#outcome") == ["dry run"]
    banner = await _texts(browser, "#dry-run")
    assert banner
    assert banner[0].startswith("DRY-RUN")
    assert await _texts(browser, "#timeline li[data-kind=step] .badge.dry-run") == ["DRY-RUN"]
    assert await _texts(browser, "tr.step[data-outcome=dry_run] .badge") == ["dry_run"]
    await shoot(browser, "dry-run")


async def test_the_sso_header_is_believed_only_from_a_trusted_proxy(
    aiohttp_client: AiohttpClient, store: Store
) -> None:
    settings = default_settings()
    trusted = IdentityResolver(lambda _: None, sso_header="X-Forwarded-User",
                               trusted_proxies=_networks("127.0.0.0/8"))  # fmt: skip
    untrusted = IdentityResolver(lambda _: None, sso_header="X-Forwarded-User",
                                 trusted_proxies=_networks("10.0.0.0/8"))  # fmt: skip
    for identities, status in ((trusted, 200), (untrusted, 401)):
        client = await aiohttp_client(review_app(store, settings, identities=identities))
        response = await client.get("/runs", headers={"X-Forwarded-User": "carol"})
        assert response.status == status
        if status == 200:
            assert 'id="user">carol<' in await response.text()


def _networks(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)
