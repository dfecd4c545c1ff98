"""Approval links that break something other than their signature: an expiry no date can hold
(403 like any invalid link), and a 500 on a link's path, whose log line must not carry the
token (it alone opens the page until it expires). Over real HTTP, on the real store."""

from __future__ import annotations

from datetime import datetime

from structlog.testing import capture_logs

from receiver.approvals.tokens import LinkTokens
from tests.integration.http.conftest import MakeEdge


async def test_a_signed_link_with_an_impossible_expiry_is_403_like_any_invalid_link(
    make_edge: MakeEdge,
) -> None:
    # Signed with the service's own key: only the expiry is out of range. It was a 500.
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    tokens = edge.env.desk.tokens
    assert tokens is not None
    ring, kid = tokens.ring, tokens.ring.signing_kid
    for exp in (10**20, -(10**15), 2**70):
        claims = {"v": 1, "kid": kid, "aid": approval.id, "ph": approval.plan_hash, "exp": exp}
        signed = ring.serializer(kid).dumps(claims | {"jti": "x"})
        for method in ("GET", "POST"):
            response = await edge.client.request(
                method, f"/approve/{kid}.{signed}", headers={"Origin": edge.base}
            )
            assert response.status == 403, (exp, method)
            assert "this approval link is not valid" in await response.text()


async def test_a_500_on_a_link_logs_its_path_without_the_token(make_edge: MakeEdge) -> None:
    # The token alone opens the page until it expires: the "unhandled error" line carried it
    # whole in its path. A clock of naive datetimes cannot be compared with the link's expiry,
    # so verifying raises TypeError, an error no handler expects: the 500 path.
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    path = edge.link(approval)
    token = path.removeprefix("/approve/")
    tokens = edge.env.desk.tokens
    assert tokens is not None
    edge.env.desk.tokens = LinkTokens(tokens.ring, lambda: datetime(2025, 1, 1))
    with capture_logs() as logs:
        for method in ("GET", "POST"):
            response = await edge.client.request(method, path, headers={"Origin": edge.base})
            assert response.status == 500, method
    errors = [line for line in logs if line["event"] == "unhandled error"]
    assert [line["path"] for line in errors] == ["/approve/<token>"] * 2
    assert token not in repr(logs)
    for part in token.split("."):  # nor its payload or its signature alone (not the kid)
        assert len(part) < 16 or part not in repr(logs)
