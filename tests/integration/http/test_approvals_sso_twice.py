"""The SSO proxy's user header given more than once, with different names, names nobody: a proxy
that adds its header (HAProxy's ``http-request add-header``) rather than setting it passes the
client's own line first, and the first line was the one believed, so anyone the proxy signed in
could decide an approval, or read the review pages, as any approver. Which line is the proxy's
cannot be told (X-Forwarded-For's hops can: the proxy's come last), so the request is refused as
one with no identity (401), nothing decided; one name, however often sent, decides."""

from __future__ import annotations

from multidict import CIMultiDict

from receiver.http.approvals import ApprovalWeb
from receiver.model import ApprovalState
from tests.support.approvals import MakeApprovalEnv, loopback_sso
from tests.support.http import MakeClient


async def test_an_sso_header_given_twice_decides_nothing(
    approval_env: MakeApprovalEnv, make_client: MakeClient
) -> None:
    env = await approval_env()
    client = await make_client(approvals=ApprovalWeb(env.desk, loopback_sso()))
    _, approval = await env.pending_run()
    path = f"/api/v1/approvals/{approval.id}/approve"
    # The client wrote alice; the proxy added who signed in, mallory (on no allow-list).
    for users in (("alice", "mallory"), ("mallory", "alice"), ("alice", " alice", "bob")):
        headers = CIMultiDict([("X-Forwarded-User", user) for user in users])
        response = await client.post(path, json={}, headers=headers)
        assert response.status == 401, (users, await response.text())
        listed = await client.get("/api/v1/approvals", headers=headers)
        assert listed.status == 401, users
        current = await env.desk.store.get_approval(approval.id)
        assert current is not None
        assert current.state is ApprovalState.PENDING
    same = CIMultiDict([("X-Forwarded-User", "alice"), ("X-Forwarded-User", "alice")])
    response = await client.post(path, json={}, headers=same)
    assert response.status == 200, await response.text()
    decided = await env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by) == (ApprovalState.APPROVED, "alice")
