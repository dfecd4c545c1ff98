"""Header bytes that are not UTF-8 on an approver's request never fail it (real HTTP, real store).

aiohttp reads such a byte as a lone surrogate, which PostgreSQL cannot take: a decision whose
User-Agent (or X-Forwarded-For hop, from a trusted proxy) held one was a 500, nothing decided.
Both are recorded as sent, each such byte replaced with U+FFFD. An SSO user header holding one
names nobody (401, as with no header): a refusal naming it could not be recorded in the audit
log ("could not record the refused decision"), and the page showed and bound that name.
"""

from __future__ import annotations

import json

from receiver.http.approvals import ApprovalWeb
from receiver.model import ApprovalState
from tests.integration.http.conftest import Edge
from tests.support.approvals import MakeApprovalEnv, loopback_sso
from tests.support.http import Client, MakeClient
from tests.support.rawhttp import exchange, status_of


async def _raw(client: Client, method: str, path: str, headers: bytes, body: bytes = b"") -> bytes:
    """``method path`` with ``headers`` (CRLF-terminated lines) as bytes, ``body`` as JSON."""
    port = client.server.port
    assert port is not None
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    ).encode()
    return await exchange(port, head + headers + b"\r\n" + body)


async def test_a_user_agent_or_forwarded_hop_not_utf8_is_recorded_replaced(
    approval_env: MakeApprovalEnv, make_client: MakeClient
) -> None:
    env = await approval_env()
    client = await make_client(approvals=ApprovalWeb(env.desk, loopback_sso()))
    _, approval = await env.pending_run()
    headers = (
        b"X-Forwarded-User: alice\r\nUser-Agent: curl\xff/8.5\r\nX-Forwarded-For: \xfe\xc3\r\n"
    )
    answer = await _raw(client, "POST", f"/api/v1/approvals/{approval.id}/approve", headers, b"{}")
    assert status_of(answer) == 200, answer
    decided = await env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert decided.state is ApprovalState.APPROVED
    assert (decided.decided_by, decided.user_agent) == ("alice", "curl\ufffd/8.5")
    assert decided.source_ip == "\ufffd\ufffd"


async def test_an_sso_name_not_utf8_names_nobody(
    approval_env: MakeApprovalEnv, make_client: MakeClient
) -> None:
    env = await approval_env()
    client = await make_client(approvals=ApprovalWeb(env.desk, loopback_sso()))
    env.desk.public_url = str(client.make_url("")).rstrip("/")
    _, approval = await env.pending_run()
    sso = b"X-Forwarded-User: Jos\xe9\r\n"
    for method, path, body in (
        ("POST", f"/api/v1/approvals/{approval.id}/approve", b"{}"),
        ("POST", f"/api/v1/approvals/{approval.id}/reject", b'{"reason": "no"}'),
        ("GET", "/api/v1/approvals", b""),
    ):
        answer = await _raw(client, method, path, sso, body)
        assert status_of(answer) == 401, (path, answer)
        said = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert "SSO" in said["error"], said
    current = await env.desk.store.get_approval(approval.id)
    assert current is not None
    assert current.state is ApprovalState.PENDING
    # The link's page does not take the header for a person: it asks for a token.
    page = await _raw(client, "GET", Edge(env, client).link(approval), sso)
    assert status_of(page) == 200, page
    html = page.split(b"\r\n\r\n", 1)[1].decode()
    assert 'name="operator_token"' in html
    assert 'id="who"' not in html
