"""The approval link, the API and Slack's callback over real HTTP, on the real store."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from click.testing import CliRunner, Result

from receiver.approvals.tokens import LinkTokens
from receiver.cli import main
from receiver.http.approvals import ApprovalWeb
from receiver.http.bodies import MAX_REASON_CHARS
from receiver.model import ApprovalState, RunOutcome
from tests.integration.http.conftest import SLACK_SECRET, Edge, MakeEdge
from tests.support.approvals import OPERATORS, MakeApprovalEnv, key_ring, loopback_sso, poke_labels
from tests.support.http import AUTH, OPERATOR, MakeClient
from tests.support.payloads import alert, notification


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
        assert response.headers["Referrer-Policy"] == "no-referrer"
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "form-action 'self'" in csp
        html = unescape(await response.text())
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
    # The page's no-referrer policy makes browsers send Origin: null; Fetch Metadata decides.
    cross = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}
    for headers in (cross, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"}):
        response = await edge.client.post(path, data=form | {"csrf": csrf}, headers=headers)
        assert response.status == 403, headers
    edge.client.session.cookie_jar.clear()  # another browser: the token is not its session's
    assert (await _post(edge, path, form | {"csrf": csrf})).status == 403
    assert await edge.snapshot() == before


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


async def test_api_needs_an_approver_for_approve_and_reject(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    api = f"/api/v1/approvals/{approval.id}"
    carol = {"Authorization": f"Bearer {OPERATORS['carol']}"}
    for decision in ("approve", "reject"):
        assert (await edge.client.post(f"{api}/{decision}")).status == 401
        assert (await edge.client.post(f"{api}/{decision}", headers=AUTH)).status == 403  # webhook
        response = await edge.client.post(f"{api}/{decision}", headers=carol, json={"reason": "x"})
        assert response.status == 403
        assert "carol may not decide" in (await response.json())["error"]
    assert (await edge.client.get("/api/v1/approvals", headers=AUTH)).status == 403
    assert (await edge.env.desk.store.get_approval(approval.id)).state is ApprovalState.PENDING  # type: ignore[union-attr]


async def test_api_lists_and_decides(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _run, approval = await edge.env.pending_run()
    bob = {"Authorization": f"Bearer {OPERATORS['bob']}"}
    listed = await (await edge.client.get("/api/v1/approvals?state=pending", headers=bob)).json()
    assert [a["id"] for a in listed["approvals"]] == [approval.id]
    assert listed["approvals"][0]["plan_hash"] == approval.plan_hash
    bad = await edge.client.get("/api/v1/approvals?state=maybe", headers=bob)
    assert (bad.status, (await bad.json())["parameter"]) == (400, "state")

    # A misspelt field is refused, not decided without it.
    typo = await edge.client.post(
        f"/api/v1/approvals/{approval.id}/reject", headers=bob, json={"reasn": "not now"}
    )
    assert typo.status == 400
    assert (await typo.json())["field"] == "reasn"
    assert "did you mean 'reason'?" in (await typo.json())["error"]
    response = await edge.client.post(
        f"/api/v1/approvals/{approval.id}/reject", headers=bob, json={"reason": "not now"}
    )
    assert response.status == 200
    body = await response.json()
    assert (body["approval"]["state"], body["approval"]["decided_by"]) == ("rejected", "bob")
    assert (await edge.env.harness.only_run()).outcome is RunOutcome.REJECTED
    again = await edge.client.post(f"/api/v1/approvals/{approval.id}/approve", headers=bob)
    assert again.status == 409
    one = await (await edge.client.get(f"/api/v1/approvals/{approval.id}", headers=bob)).json()
    assert one["approval"]["reason"] == "not now"


async def test_api_approving_after_the_alert_resolved_is_refused(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    await edge.env.harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
    alice = {"Authorization": f"Bearer {OPERATORS['alice']}"}
    response = await edge.client.post(f"/api/v1/approvals/{approval.id}/approve", headers=alice)
    assert response.status == 409
    assert "resolved" in (await response.json())["error"]


def _slack_click(
    approval_id: str, user: str, action: str = "remediator_approve", team: str = "T0TEAM"
) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "team": {"id": team},
        "actions": [{"action_id": action, "value": approval_id}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def _signed(body: bytes, ts: int, secret: str = SLACK_SECRET) -> dict[str, str]:
    base = f"v0:{ts}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def test_slack_refuses_bad_and_stale_signatures_and_decides_as_the_mapped_user(
    make_edge: MakeEdge,
) -> None:
    now = int(time.time())
    edge = await make_edge(slack_now=float(now))
    _, approval = await edge.env.pending_run()
    body = _slack_click(approval.id, "U0BOB")
    path = "/hooks/slack/interactions"

    assert (await edge.client.post(path, data=body, headers=_signed(body, now, "x"))).status == 401
    stale = _signed(body, now - 301)
    assert (await edge.client.post(path, data=body, headers=stale)).status == 401
    tampered = _slack_click(approval.id, "U0BOB", "remediator_reject")
    assert (await edge.client.post(path, data=tampered, headers=_signed(body, now))).status == 401
    unmapped = _slack_click(approval.id, "U0EVE")
    response = await edge.client.post(path, data=unmapped, headers=_signed(unmapped, now))
    assert response.status == 403
    assert (await edge.env.desk.store.get_approval(approval.id)).state is ApprovalState.PENDING  # type: ignore[union-attr]

    response = await edge.client.post(path, data=body, headers=_signed(body, now - 60))
    assert response.status == 200, await response.text()
    decided = await edge.env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by, decided.channel) == (
        ApprovalState.APPROVED,
        "bob",
        "slack",
    )


async def test_slack_refuses_a_signed_click_from_another_workspace(make_edge: MakeEdge) -> None:
    # The app's one signing secret signs for every workspace it is installed in: the signature
    # alone let a mapped user id clicked in another workspace decide.
    now = int(time.time())
    edge = await make_edge(slack_now=float(now), slack_teams=("T0TEAM",))
    _, approval = await edge.env.pending_run()
    path = "/hooks/slack/interactions"
    before = await edge.snapshot()

    foreign = _slack_click(approval.id, "U0BOB", team="T0OTHER")
    response = await edge.client.post(path, data=foreign, headers=_signed(foreign, now))
    assert response.status == 403
    assert (await response.json()) == {"error": "Slack team T0OTHER is not one approvals come from"}
    assert await edge.snapshot() == before  # decided nothing, recorded nothing

    body = _slack_click(approval.id, "U0BOB")
    response = await edge.client.post(path, data=body, headers=_signed(body, now))
    assert response.status == 200, await response.text()
    decided = await edge.env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by) == (ApprovalState.APPROVED, "bob")


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
    as_alice = {"Origin": edge.base, "X-Forwarded-User": "alice"}
    response = await client.post(path, data=form, headers=as_alice)
    assert response.status == 200, await response.text()
    decided = await env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.decided_by, decided.channel) == ("alice", "web")


async def test_cli_lists_approves_and_rejects_as_the_operator(
    make_edge: MakeEdge, tmp_path: Path
) -> None:
    edge = await make_edge()
    _, first = await edge.env.pending_run("api")
    await edge.env.harness.deliver(poke_labels("web"))
    second = next(a for a in await edge.env.desk.store.list_approvals() if a.id != first.id)
    alice = tmp_path / "alice-token"
    alice.write_text(OPERATORS["alice"] + "\n")
    carol = tmp_path / "carol-token"
    carol.write_text(OPERATORS["carol"])

    def cli(*args: str, token: Path | None = alice) -> Result:
        env = {"REMEDIATOR_OPERATOR_TOKEN_FILE": str(token)} if token else {}
        return CliRunner().invoke(main, ["approvals", *args, "--url", edge.base], env=env)

    # The command runs its own event loop, so it runs in a thread while this loop serves.
    listed = await asyncio.to_thread(cli, "list", "--state", "pending")
    assert listed.exit_code == 0, listed.output
    assert first.id in listed.stdout
    assert second.id in listed.stdout
    as_json = await asyncio.to_thread(cli, "list", "--json")
    assert {a["id"] for a in json.loads(as_json.stdout)["approvals"]} == {first.id, second.id}

    refused = await asyncio.to_thread(cli, "approve", first.id, token=carol)
    assert refused.exit_code == 1
    assert "HTTP 403" in refused.stderr
    missing = await asyncio.to_thread(cli, "approve", first.id, token=None)
    assert missing.exit_code == 1
    assert "HTTP 401" in missing.stderr

    approved = await asyncio.to_thread(cli, "approve", first.id, "--reason", "looks right")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith("approved by alice")
    rejected = await asyncio.to_thread(cli, "reject", second.id, "--reason", "not this one")
    assert rejected.exit_code == 0, rejected.output
    assert rejected.stdout.startswith("rejected by alice")
    again = await asyncio.to_thread(cli, "approve", first.id)
    assert again.exit_code == 1
    assert "HTTP 409" in again.stderr


async def test_an_empty_filter_is_refused_as_the_runs_api_refuses_it(make_edge: MakeEdge) -> None:
    # `?rule=` listed every approval (no filter), where /api/v1/runs?rule= is a 400: a script
    # that filled in an unset variable read every approval as the rule's.
    edge = await make_edge()
    await edge.env.pending_run()
    bob = {"Authorization": f"Bearer {OPERATORS['bob']}"}
    for name in ("state", "rule", "run", "since", "limit"):
        for value in ("", "%20"):
            response = await edge.client.get(f"/api/v1/approvals?{name}={value}", headers=bob)
            assert response.status == 400, (name, value)
            assert (await response.json())["parameter"] == name
    for path, headers in (("/api/v1/approvals", bob), ("/api/v1/runs", OPERATOR)):
        response = await edge.client.get(f"{path}?rule=", headers=headers)
        assert (response.status, await response.json()) == (
            400,
            {"error": "rule must not be empty", "parameter": "rule"},
        ), path
