"""A URL's secret as it went out: aiohttp (yarl) requotes a URL before sending it, so the
server's request line, what it echoes, and what aiohttp's own errors quote spell the secret
otherwise than the configuration does (``%2f`` in a query sent as ``/``, ``%2b`` as ``%2B``).
Real local servers: one that echoes its request line in a 404, one that answers a malformed
status line (aiohttp's ClientResponseError then ends ``url='...'``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from remediations.base import ActionError, ActionRefused
from remediations.http.endpoints import Endpoint, HttpCall, HttpCallParams
from remediations.http.post import HttpPolicy
from remediations.notify.message import Event, Message
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from remediations.targets import Target
from tests.support.http_calls import endpoint_ctx
from tests.support.peer import answering

# An Azure-style shared access signature: base64 whose "+" and "/" are percent-encoded, in
# lowercase as some tools write them. Sent, it reads "Zk3Hq9sX%2BPl0Wm2e/R5tUvB7nA1c".
SIG = "Zk3Hq9sX%2bPl0Wm2e%2fR5tUvB7nA1c"
PIECES = ("Zk3Hq9sX", "Pl0Wm2e", "R5tUvB7nA1c")
ONCE = HttpPolicy(timeout=2.0, attempts=1)


def assert_no_secret(text: str) -> None:
    for piece in PIECES:
        assert piece not in text, text


async def echo_request_line(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=404, text=f"Cannot POST {request.raw_path}")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


@pytest.fixture
async def malformed() -> AsyncIterator[str]:
    """A server answering every request with a status line HTTP cannot read."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 abc Broken\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_echoing_the_request_line_as_sent_gets_no_secret_recorded(
    session: aiohttp.ClientSession,
) -> None:
    async with answering(echo_request_line) as base:
        ctx = endpoint_ctx(session, Endpoint("flush", f"{base}/hook?sv=2024&sig={SIG}", {}, ONCE))
        params = HttpCallParams.model_validate({"body": {"n": 1}})
        with pytest.raises(ActionRefused) as caught:
            await HttpCall().run(ctx, Target("HttpEndpoint", "", "flush"), params)

    assert "HTTP 404: Cannot POST" in caught.value.message
    assert_no_secret(caught.value.message)


async def test_a_malformed_answer_quotes_no_secret_of_the_url_as_sent(
    session: aiohttp.ClientSession, malformed: str
) -> None:
    ctx = endpoint_ctx(session, Endpoint("flush", f"{malformed}/hook?sig={SIG}", {}, ONCE))
    params = HttpCallParams.model_validate({"body": {"n": 1}})
    with pytest.raises(ActionError) as caught:
        await HttpCall().run(ctx, Target("HttpEndpoint", "", "flush"), params)

    assert "ClientResponseError" in caught.value.message
    assert f"url='{malformed}/…'" in caught.value.message  # the host is still named
    assert_no_secret(caught.value.message)


async def test_a_channel_with_a_malformed_answer_names_no_secret_in_its_detail(
    session: aiohttp.ClientSession, malformed: str
) -> None:
    channel = Channel("oncall", ChannelKind.WEBHOOK, f"{malformed}/notify?sig={SIG}", ONCE)
    notifier = Notifier({"oncall": channel}, session)

    delivery = await notifier.send("oncall", Message(Event.RUN_REFUSED, "refused"))

    assert not delivery.ok
    assert "ClientResponseError" in delivery.detail
    assert_no_secret(delivery.detail)
