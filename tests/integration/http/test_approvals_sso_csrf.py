"""A decision on the API that only the SSO proxy's header authenticates, sent by another site's
page: the proxy adds its user header to whatever the browser sends it with the proxy's own
cookie, so a cross-site form would decide as the person who opened that page. Refused (403),
nothing decided; the same person's call from the service's own origin, or a script's (no
Origin, no Fetch Metadata), still decides."""

from __future__ import annotations

from receiver.http.approvals import ApprovalWeb
from receiver.model import ApprovalState
from tests.support.approvals import MakeApprovalEnv, loopback_sso
from tests.support.http import MakeClient

SSO = {"X-Forwarded-User": "alice"}


async def test_a_cross_site_sso_decision_on_the_api_is_refused(
    approval_env: MakeApprovalEnv, make_client: MakeClient
) -> None:
    env = await approval_env()
    sso = loopback_sso()
    client = await make_client(approvals=ApprovalWeb(env.desk, sso))
    base = str(client.make_url("")).rstrip("/")
    env.desk.public_url = base
    _, approval = await env.pending_run()
    path = f"/api/v1/approvals/{approval.id}/approve"
    # What a form on another site makes the browser send (the body need not be JSON).
    forged = [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},  # a browser without Fetch Metadata
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain's page
        {"Origin": "null"},  # a sandboxed frame's form
    ]
    for headers in forged:
        response = await client.post(
            path,
            data=b"reason=forged",  # a form's body: no JSON, refused as cross-site all the same
            headers={**SSO, **headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status == 403, (headers, await response.text())
        assert "another site" in (await response.json())["error"]
        current = await env.desk.store.get_approval(approval.id)
        assert current is not None
        assert current.state is ApprovalState.PENDING
    # Each attempt is in the audit log beside the approval it aimed at: who, how, why.
    audit = await env.harness.store.audit_entries(approval.run_id)
    refused = [e["data"] for e in audit if e["kind"] == "approval.refused"]
    assert len(refused) == len(forged)
    assert {(r["approval_id"], r["by"], r["via"], r["channel"]) for r in refused} == {
        (approval.id, "alice", "sso", "api")
    }
    assert all("another site" in r["why"] for r in refused)
    # An unknown id is refused the same way, with nothing to attach a record to.
    unknown = await client.post(
        "/api/v1/approvals/no-such-approval/approve",
        data=b"",
        headers={**SSO, **forged[0]},
    )
    assert unknown.status == 403, await unknown.text()
    # The service's own origin, or a script through the proxy, decides.
    response = await client.post(
        path, json={}, headers={**SSO, "Origin": base, "Sec-Fetch-Site": "same-origin"}
    )
    assert response.status == 200, await response.text()
    decided = await env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by) == (ApprovalState.APPROVED, "alice")


async def test_a_script_through_the_sso_proxy_still_decides(
    approval_env: MakeApprovalEnv, make_client: MakeClient
) -> None:
    env = await approval_env()
    sso = loopback_sso()
    client = await make_client(approvals=ApprovalWeb(env.desk, sso))
    _, approval = await env.pending_run()
    response = await client.post(
        f"/api/v1/approvals/{approval.id}/reject", json={"reason": "no"}, headers=SSO
    )
    assert response.status == 200, await response.text()
