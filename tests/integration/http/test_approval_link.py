"""The approval link's page over real HTTP, on the real store: it shows the step and a GET
changes nothing; a decision posted from it needs its CSRF token, from the same site, and works
once; a bad query gets its error page; forged, tampered, expired and wrong-key links are
refused; behind the SSO proxy the page knows the person."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

from receiver.approvals.tokens import LinkTokens
from receiver.http.approvals import ApprovalWeb
from receiver.http.bodies import MAX_REASON_CHARS
from receiver.model import ApprovalState
from tests.integration.http.conftest import Edge, MakeEdge
from tests.support.approvals import OPERATORS, MakeApprovalEnv, key_ring, loopback_sso, poke_labels
from tests.support.http import OPERATOR, MakeClient


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def _open(edge: Edge, path: str) -> str:
    response = await edge.client.get(path)
    assert response.status == 200, await response.text()
    return await response.text()


async def _post(edge: Edge, path: str, form: dict[str, str], *, origin: str | None = "") -> Any:
    headers = {} if origin is None else {"Origin": origin or edge.base}
    return await edge.client.post(path, data=form, headers=headers)


async def test_the_link_shows_the_step_and_a_get_changes_nothing(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    before = await edge.snapshot()
    path = edge.link(approval)
    for _ in range(2):  # an unfurler, then the person
        response = await edge.client.get(path)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        # same-origin, the header and the page's meta alike (the later would win): under
        # no-referrer Chromium sent the page's own POST with Origin: null and, over http at an
        # address other than loopback, no Fetch Metadata, and every decision was refused.
        assert response.headers["Referrer-Policy"] == "same-origin"
        html = await response.text()
        assert re.findall(r'<meta name="referrer" content="([^"]*)">', html) == ["same-origin"]
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "form-action 'self'" in csp
        html = unescape(html)
    for needle in ("poke Deployment/shop/api once", "Deployment shop/api", "Poke", "test.poke"):
        assert needle in html
    assert approval.expires_at.isoformat(timespec="seconds") in html
    assert '"value": 0' in html
    assert '"value": 1' in html
    # The form takes as long a reason as the server does (it took 500 of the 1000).
    assert f'name="reason" maxlength="{MAX_REASON_CHARS}"' in html
    assert await edge.snapshot() == before


async def test_a_post_without_the_csrf_token_or_from_elsewhere_is_refused(
    make_edge: MakeEdge,
) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    path = edge.link(approval)
    csrf = _csrf(await _open(edge, path))
    before = await edge.snapshot()
    form = {"decision": "approve", "operator_token": OPERATORS["alice"]}

    assert (await _post(edge, path, form)).status == 403  # no token
    assert (await _post(edge, path, form | {"csrf": "k1.forged.x"})).status == 403
    assert (
        await _post(edge, path, form | {"csrf": csrf}, origin="https://evil.example")
    ).status == 403
    assert (await _post(edge, path, form | {"csrf": csrf}, origin=None)).status == 403
    # Origin: null (a browser that hides it, a sandboxed frame): Fetch Metadata decides.
    cross = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}
    for headers in (cross, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"}):
        response = await edge.client.post(path, data=form | {"csrf": csrf}, headers=headers)
        assert response.status == 403, headers
    edge.client.session.cookie_jar.clear()  # another browser: the token is not its session's
    assert (await _post(edge, path, form | {"csrf": csrf})).status == 403
    # Nothing decided; each attempt, made with alice's token, is in the audit log beside the
    # approval it aimed at, once: who, how and why not (it left no trace).
    after = await edge.snapshot()
    assert after[:4] == before[:4]
    added = [r for r in after[4] if r not in before[4]]
    assert [r["kind"] for r in added] == ["approval.refused"] * 8
    refused = [json.loads(r["data"]) for r in added]
    who = {(r["approval_id"], r["by"], r["via"], r["channel"], r["decision"]) for r in refused}
    assert who == {(approval.id, "alice", "operator-token", "web", "approve")}
    whys = [r["why"] for r in refused]
    assert whys.count("the decision must come from this service's own page") == 5
    assert sum("was not sent from the page" in why for why in whys) == 3
    # A form without a credential names nobody: anyone can send one, and it writes nothing.
    nobody = {"decision": "approve", "operator_token": "not-a-token"}
    assert (await _post(edge, path, nobody, origin="https://evil.example")).status == 403
    assert (await _post(edge, path, nobody)).status == 403
    assert await edge.snapshot() == after


async def test_a_csrf_token_of_another_approval_is_refused(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _, first = await edge.env.pending_run("api")
    await edge.env.harness.deliver(poke_labels("web"))
    second = next(a for a in await edge.env.desk.store.list_approvals() if a.id != first.id)
    other_csrf = _csrf(await _open(edge, edge.link(second)))
    await _open(edge, edge.link(first))  # same browser session, the first page
    form = {"decision": "approve", "operator_token": OPERATORS["alice"], "csrf": other_csrf}
    assert (await _post(edge, edge.link(first), form)).status == 403
    assert (await edge.env.desk.store.get_approval(first.id)).state is ApprovalState.PENDING  # type: ignore[union-attr]


async def test_deciding_on_the_page_works_once(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _run, approval = await edge.env.pending_run()
    path = edge.link(approval)
    csrf = _csrf(await _open(edge, path))
    form = {"decision": "approve", "operator_token": OPERATORS["alice"], "csrf": csrf}

    wrong = await _post(edge, path, form | {"operator_token": "nope"})
    assert wrong.status == 401
    response = await _post(edge, path, form | {"reason": "rollout looks bad"})
    assert response.status == 200
    assert "Approved by alice" in await response.text()
    decided = await edge.env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by, decided.channel) == (
        ApprovalState.APPROVED,
        "alice",
        "web",
    )
    assert decided.token_id
    assert decided.source_ip == "127.0.0.1"
    assert decided.reason == "rollout looks bad"

    replay = await _post(edge, path, form)
    assert replay.status == 409
    assert "already approved by alice" in await replay.text()
    # From the page of the decided approval, which has no form (so no CSRF token): it says
    # who decided, where it said the form had expired.
    assert 'name="csrf"' not in await _open(edge, path)
    formless = await _post(edge, path, form | {"csrf": ""})
    assert formless.status == 409
    assert "already approved by alice" in await formless.text()
    await edge.env.harness.drain()
    assert edge.env.peer.pokes == 1


async def test_the_link_answers_a_bad_query_with_its_error_page(make_edge: MakeEdge) -> None:
    # The link's page is a page: a bad query got the middleware's JSON 400, raw JSON in a
    # browser. It is the error page with the message, and decides nothing; the API stays JSON.
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    path = edge.link(approval)
    csrf = _csrf(await _open(edge, path))
    form = {"decision": "approve", "operator_token": OPERATORS["alice"], "csrf": csrf}
    for query, message in (
        ("x=1&x=2", "x is given more than once: give it once"),
        ("x=%ff", "x is not valid UTF-8 once its %-escapes are decoded"),
        ("x=a%00b", "x must not contain U+0000 (NUL)"),
    ):
        for response in (
            await edge.client.get(f"{path}?{query}"),
            await _post(edge, f"{path}?{query}", form),
        ):
            assert (response.status, response.content_type) == (400, "text/html"), query
            assert message in unescape(await response.text()), query
    assert (await edge.env.desk.store.get_approval(approval.id)).state is ApprovalState.PENDING  # type: ignore[union-attr]
    response = await edge.client.get("/api/v1/approvals?x=1&x=2", headers=OPERATOR)
    assert (response.status, await response.json()) == (
        400,
        {"error": "x is given more than once: give it once", "parameter": "x"},
    )


async def test_forged_tampered_expired_and_wrong_key_links_are_refused(
    make_edge: MakeEdge,
) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    tokens = edge.env.desk.tokens
    assert tokens is not None
    good = edge.link(approval)
    later = datetime.now(UTC) + timedelta(minutes=5)

    forged = "/approve/k1." + good.split(".", 1)[1][::-1]
    tampered = "/approve/" + tokens.issue(approval.id, "0" * 64, later)  # another plan
    expired = "/approve/" + tokens.issue(approval.id, approval.plan_hash, datetime.now(UTC))
    other_key = "/approve/" + LinkTokens(key_ring("k2")).issue(
        approval.id, approval.plan_hash, later
    )
    for path, status in ((forged, 403), (tampered, 403), (expired, 410), (other_key, 403)):
        for method in ("GET", "POST"):
            response = await edge.client.request(method, path, headers={"Origin": edge.base})
            assert response.status == status, (path, method)
            assert response.headers["Cache-Control"] == "no-store"
            # The page says it once, whether the refusal's own words say it or not.
            assert (await response.text()).lower().count("nothing was changed") == 1, path
    # Rotated out: once k1 is no longer listed, its links stop verifying.
    edge.env.desk.tokens = LinkTokens(key_ring("k2"))
    assert (await edge.client.get(good)).status == 403
    assert (await edge.env.desk.store.get_approval(approval.id)).state is ApprovalState.PENDING  # type: ignore[union-attr]


async def test_behind_the_sso_proxy_the_page_knows_the_person(
    approval_env: MakeApprovalEnv, make_client: MakeClient
) -> None:
    env = await approval_env()
    sso = loopback_sso()
    client = await make_client(approvals=ApprovalWeb(env.desk, sso))
    env.desk.public_url = str(client.make_url("")).rstrip("/")
    edge = Edge(env, client)
    _, approval = await env.pending_run()
    path = edge.link(approval)

    page = await client.get(path, headers={"X-Forwarded-User": "alice"})
    html = await page.text()
    assert 'You are <strong id="who">alice</strong>' in html
    assert 'name="operator_token"' not in html
    form = {"decision": "approve", "csrf": _csrf(html)}
    # The token is bound to the person the proxy named when the page was shown.
    as_bob = {"Origin": edge.base, "X-Forwarded-User": "bob"}
    assert (await client.post(path, data=form, headers=as_bob)).status == 403
    # Another site's form, which the proxy names alice in, is refused and recorded as hers.
    forged = {"Origin": "https://evil.example", "X-Forwarded-User": "alice"}
    assert (await client.post(path, data=form, headers=forged)).status == 403
    audit = await env.harness.store.audit_entries(approval.run_id)
    refused = [e["data"] for e in audit if e["kind"] == "approval.refused"]
    assert [(r["by"], r["via"]) for r in refused] == [("bob", "sso"), ("alice", "sso")]
    assert "own page" in refused[1]["why"]
    as_alice = {"Origin": edge.base, "X-Forwarded-User": "alice"}
    response = await client.post(path, data=form, headers=as_alice)
    assert response.status == 200, await response.text()
    decided = await env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.decided_by, decided.channel) == ("alice", "web")
