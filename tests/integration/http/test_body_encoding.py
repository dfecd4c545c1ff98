"""A body that is not what its Content-Encoding says is the client's error on every route that
reads one: 400 naming the body and the encoding, never a 500 with a traceback in the log; a
valid compressed body is read as usual."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from structlog.testing import capture_logs

from receiver.http.alerts import ALERTS_PATH
from receiver.http.approvals import APPROVALS_API, SLACK_PATH
from receiver.http.queues import EVENTS_PATH, JOBS_PATH
from receiver.store import Store
from tests.integration.http.conftest import MakeEdge
from tests.support.approvals import OPERATORS
from tests.support.http import AUTH, OPERATOR, Client, MakeClient, sample

pytestmark = [pytest.mark.postgres]

NOT_GZIP = b"{}"


async def _refused(
    client: Client, method: str, path: str, headers: dict[str, str], encoding: str = "gzip"
) -> None:
    with capture_logs() as logs:
        response = await client.request(
            method,
            path,
            data=NOT_GZIP,
            headers={**headers, "Content-Type": "application/json", "Content-Encoding": encoding},
        )
        assert response.status == 400, await response.text()
        body = await response.json()
    assert body["field"] == "body"
    assert "request body cannot be read" in body["error"]
    assert encoding in body["error"]
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    # aiohttp's server logs what escapes a handler, or its reading of the body after the answer.
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= 40] == []


async def test_an_undecodable_body_is_400_on_the_webhook_and_operator_routes(
    make_client: MakeClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client()
    await _refused(client, "POST", ALERTS_PATH, AUTH)
    await _refused(client, "POST", f"{EVENTS_PATH}/1/retry", OPERATOR)
    await _refused(client, "POST", f"{JOBS_PATH}/1/drop", OPERATOR)
    assert await store.queue_depth() == 0
    # Compressed for real, the same routes read it.
    valid = await client.post(
        ALERTS_PATH,
        data=gzip.compress(json.dumps(sample()).encode()),
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert valid.status == 200
    assert await valid.json() == {"accepted": 1, "duplicates": 0}
    retried = await client.post(
        f"{EVENTS_PATH}/999/retry",
        data=zlib.compress(b'{"reason": "again"}'),
        headers={**OPERATOR, "Content-Type": "application/json", "Content-Encoding": "deflate"},
    )
    assert retried.status == 404  # read, and no such event
    _no_traceback(caplog)


async def test_an_undecodable_body_is_400_on_the_approval_routes(
    make_edge: MakeEdge, caplog: pytest.LogCaptureFixture
) -> None:
    edge = await make_edge()
    alice = {"Authorization": f"Bearer {OPERATORS['alice']}"}
    await _refused(edge.client, "POST", f"{APPROVALS_API}/1/approve", alice)
    await _refused(edge.client, "POST", SLACK_PATH, {})
    _no_traceback(caplog)


@pytest.mark.parametrize(
    "coding", ["x-bogus", "gzip, gzip", "identity, gzip", "x-gzip", "compress"]
)
async def test_a_coding_not_decoded_here_is_415_naming_the_header(
    make_client: MakeClient, store: Store, caplog: pytest.LogCaptureFixture, coding: str
) -> None:
    # aiohttp takes any of these for identity: the handler would read the bytes undecoded.
    client = await make_client()
    payload = gzip.compress(json.dumps(sample()).encode())
    for path, headers in ((ALERTS_PATH, AUTH), (f"{EVENTS_PATH}/1/retry", OPERATOR)):
        response = await client.post(
            path,
            data=payload,
            headers={**headers, "Content-Type": "application/json", "Content-Encoding": coding},
        )
        assert response.status == 415, await response.text()
        assert response.content_type == "application/json"
        body = await response.json()
        assert body["header"] == "Content-Encoding"
        assert body["accepted"] == ["identity", "gzip", "deflate"]
        assert coding in body["error"]
        assert response.headers["Accept-Encoding"] == "gzip, deflate"
    assert await store.queue_depth() == 0
    _no_traceback(caplog)


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_br_and_zstd_are_415_like_any_other_coding(
    make_client: MakeClient, coding: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Without their decoders (Brotli, backports.zstd: dependencies for this) aiohttp's parser
    # answered a text/plain 400 before the application saw the request.
    client = await make_client()
    response = await client.post(
        ALERTS_PATH,
        data=b"{}",
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": coding},
    )
    assert response.status == 415, await response.text()
    assert (await response.json())["header"] == "Content-Encoding"
    # aiohttp decoded the unread body after the answer and logged an error-level traceback.
    await client.close()
    _no_traceback(caplog)


async def test_identity_and_the_decoded_codings_in_any_case_are_read(
    make_client: MakeClient, store: Store
) -> None:
    client = await make_client()
    document = json.dumps(sample()).encode()
    for coding, data in (("identity", document), ("GZip", gzip.compress(document)), ("", document)):
        response = await client.post(
            ALERTS_PATH,
            data=data,
            headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": coding},
        )
        assert response.status == 200, (coding, await response.text())


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/healthz", 405), ("PUT", ALERTS_PATH, 405), ("POST", "/nowhere", 404)],
)
async def test_a_request_no_route_takes_is_404_or_405_whatever_its_coding(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, method: str, path: str, status: int
) -> None:
    # A 415 said the body's coding was the problem, when no handler would have read it at all.
    client = await make_client()
    response = await client.request(
        method,
        path,
        data=b"{}",
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "x-bogus"},
    )
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    if status == 405:
        assert method not in response.headers["Allow"]
    await client.close()
    _no_traceback(caplog)
