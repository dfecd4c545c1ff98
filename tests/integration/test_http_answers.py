"""Answers whose body is the problem, from real local servers: one whose body stalls after the
status line, one that streams far more than any excerpt. The status line says what happened;
only the start of a body is read (remediations/http/answer.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from remediations.base import (
    ActionContext,
    ActionRefused,
    Outcome,
)
from remediations.http.endpoints import Endpoint, HttpCall, HttpCallParams
from remediations.http.post import HttpPolicy
from remediations.notify.message import Event, Message
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from remediations.targets import Target
from tests.support.http_calls import endpoint_ctx
from tests.support.peer import answering

# Short tries, so a stalled body times out quickly; three of them, so a retry would show.
QUICK = HttpPolicy(timeout=0.5, attempts=3, initial_wait=0.01, max_wait=0.02)
PARAMS = HttpCallParams.model_validate({"body": {"n": 1}})
FLUSH = Target("HttpEndpoint", "", "flush")
MIB = 1 << 20


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


def ctx(session: aiohttp.ClientSession, url: str, policy: HttpPolicy = QUICK) -> ActionContext:
    """The context of a step calling endpoint ``flush`` at ``url`` under ``policy``."""
    return endpoint_ctx(session, Endpoint("flush", url, {}, policy))


class Stalling:
    """Answers ``status`` with a body that starts and then waits until ``release`` is set;
    counts the requests it took."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests += 1
        response = web.StreamResponse(status=self.status)
        response.content_length = 10_000
        await response.prepare(request)
        await response.write(b"accepted, details follow")
        await self.release.wait()  # the body never comes: the behaviour under test
        return response


@asynccontextmanager
async def stalling(status: int) -> AsyncIterator[tuple[Stalling, str]]:
    server = Stalling(status)
    async with answering(server.handle) as base:
        try:
            yield server, f"{base}/hook"
        finally:
            server.release.set()  # so the server's shutdown need not wait for its handlers


async def test_a_2xx_whose_body_stalls_is_done_once_not_sent_again(
    session: aiohttp.ClientSession,
) -> None:
    async with stalling(200) as (server, url):
        result = await HttpCall().run(ctx(session, url), FLUSH, PARAMS)

    assert server.requests == 1  # the endpoint said it acted: no second POST
    assert result.outcome is Outcome.OK
    assert result.after["response"] == "accepted, details follow"
    assert "answered HTTP 200 (its body broke off: timed out)" in result.message


async def test_a_4xx_whose_body_stalls_is_a_refusal_not_retried(
    session: aiohttp.ClientSession,
) -> None:
    async with stalling(400) as (server, url):
        with pytest.raises(ActionRefused) as caught:
            await HttpCall().run(ctx(session, url), FLUSH, PARAMS)

    assert server.requests == 1
    assert "refused the request: HTTP 400: accepted, details follow" in caught.value.message
    assert not caught.value.may_have_acted


async def test_a_channel_whose_2xx_body_stalls_is_delivered_once(
    session: aiohttp.ClientSession,
) -> None:
    async with stalling(200) as (server, url):
        notifier = Notifier({"oncall": Channel("oncall", ChannelKind.WEBHOOK, url, QUICK)}, session)
        delivery = await notifier.send("oncall", Message(Event.RUN_FINISHED, "done"))

    assert server.requests == 1  # one message in the channel, not three
    assert delivery.ok, delivery.detail


def streaming(
    total: int, written: list[int], done: asyncio.Event
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler answering 200 with ``total`` bytes, 1 MiB a write, counting in ``written``
    what it could write before the client hung up; ``done`` is set when it stops."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            await request.read()
            response = web.StreamResponse(status=200)
            await response.prepare(request)
            chunk = b"x" * MIB
            for _ in range(total // MIB):
                await response.write(chunk)
                written[0] += len(chunk)
            return response
        except ConnectionError:  # the client hung up: what this test wants to see
            return web.Response()
        finally:
            done.set()

    return handle


async def test_a_huge_answer_is_read_only_as_far_as_its_excerpt_needs(
    session: aiohttp.ClientSession,
) -> None:
    written, done = [0], asyncio.Event()
    async with answering(streaming(96 * MIB, written, done)) as base:
        patient = HttpPolicy(timeout=30.0, attempts=1)
        result = await HttpCall().run(ctx(session, f"{base}/hook", patient), FLUSH, PARAMS)
        await asyncio.wait_for(done.wait(), timeout=30)

    assert result.outcome is Outcome.OK
    assert result.after["response"] == "x" * 500
    # The client hung up after the start: what the server got written is what the sockets'
    # buffers held, megabytes, not the 96 MiB it meant to send (all of it read into memory).
    assert written[0] < 32 * MIB, written[0]


def declaring(status: int, charset: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler answering ``status`` with a JSON body whose Content-Type declares ``charset``,
    after a byte no charset of those below reads (punycode would decode the JSON alone)."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        content_type = f"application/json; charset={charset}"
        return web.Response(
            status=status, body=b'\xff{"ok":true}', headers={"Content-Type": content_type}
        )

    return handle


# Charsets Python knows that are no text encoding (bytes to bytes: LookupError on decode) or
# that take no "replace" (UnicodeError): a server's answer declared them, and post_json raised.
NOT_TEXT = ["base64", "rot13", "hex", "zlib", "idna", "punycode", "undefined"]


@pytest.mark.parametrize("charset", NOT_TEXT)
async def test_an_answer_declaring_a_charset_that_is_no_text_encoding_is_read_as_utf8(
    session: aiohttp.ClientSession, charset: str
) -> None:
    async with answering(declaring(200, charset)) as base:
        result = await HttpCall().run(ctx(session, f"{base}/hook"), FLUSH, PARAMS)
        notifier = Notifier(
            {"oncall": Channel("oncall", ChannelKind.WEBHOOK, f"{base}/hook", QUICK)}, session
        )
        delivery = await notifier.send("oncall", Message(Event.RUN_FINISHED, "done"))

    # Before: LookupError out of the action ("action crashed", the step failed though the
    # endpoint acted) and a message the channel took recorded as not delivered.
    assert result.outcome is Outcome.OK
    assert result.after["response"] == '\ufffd{"ok":true}'
    assert delivery.ok, delivery.detail


async def test_a_refusal_declaring_a_charset_that_is_no_text_encoding_says_why(
    session: aiohttp.ClientSession,
) -> None:
    async with answering(declaring(400, "base64")) as base:
        with pytest.raises(ActionRefused) as caught:
            await HttpCall().run(ctx(session, f"{base}/hook"), FLUSH, PARAMS)

    assert 'refused the request: HTTP 400: \ufffd{"ok":true}' in caught.value.message
