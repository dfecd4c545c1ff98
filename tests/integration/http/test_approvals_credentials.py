"""Credentials on the approvals API of the real application, over real HTTP on the real store:
a non-UTF-8 Authorization header is 401; the webhook credential is 403, as on every other
operator route; a path that only begins like the API's takes a credential too."""

from __future__ import annotations

import pytest

from receiver.http.approvals import APPROVALS_API
from tests.integration.http.conftest import MakeEdge
from tests.support.approvals import OPERATORS
from tests.support.http import AUTH
from tests.support.rawhttp import exchange, status_of

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xff", b"Bearer " + OPERATORS["alice"].encode() + b"\xff", b"\xed\xa0\x80"],
)
async def test_authorization_that_is_not_utf8_is_401_on_the_approvals_api(
    make_edge: MakeEdge, authorization: bytes
) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    port = edge.client.server.port
    assert port is not None
    for method, path in (
        ("GET", APPROVALS_API),
        ("GET", f"{APPROVALS_API}/{approval.id}"),
        ("POST", f"{APPROVALS_API}/{approval.id}/approve"),
    ):
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n"
        request = head.encode() + b"Authorization: " + authorization + b"\r\n\r\n{}"
        assert status_of(await exchange(port, request)) == 401, (method, path)


async def test_the_webhook_credential_is_403_on_the_approvals_api(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    for method, path in (
        ("GET", APPROVALS_API),
        ("GET", f"{APPROVALS_API}/{approval.id}"),
        ("POST", f"{APPROVALS_API}/{approval.id}/approve"),
        ("POST", f"{APPROVALS_API}/{approval.id}/reject"),
    ):
        response = await edge.client.request(method, path, headers=AUTH)
        assert response.status == 403, (method, path)
        assert "webhook" in (await response.json())["error"]
        # No credential, or an unknown one, is still 401.
        assert (await edge.client.request(method, path)).status == 401
        unknown = {"Authorization": "Bearer nobody-0123456789"}
        assert (await edge.client.request(method, path, headers=unknown)).status == 401


async def test_a_path_that_only_begins_like_the_approvals_api_takes_a_credential(
    make_edge: MakeEdge,
) -> None:
    # The approvals API authenticates its callers itself; the edge skipped every path that
    # began with its text, so /api/v1/approvalsX answered 404 to anyone, and a future route
    # named so would have had no authentication at all.
    edge = await make_edge()
    for path in (f"{APPROVALS_API}X", f"{APPROVALS_API}-export", f"{APPROVALS_API}x/1"):
        assert (await edge.client.get(path)).status == 401, path
    assert (await edge.client.get(APPROVALS_API)).status == 401  # its own check, as before
