"""Slow clients against the real server (``create_runner``, a TCP socket, the real store): a
request whose headers or body never finish is closed after the read timeout, however it
trickles, and does not keep others from being served."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr
from structlog.testing import capture_logs

from receiver.config import Settings
from receiver.http.app import create_app, create_runner
from receiver.http.deps import HealthChecks
from receiver.intake import Intake
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.support.http import TOKEN, sample
from tests.support.polling import current, eventually
from tests.support.rawhttp import exchange, read_to_eof, status_of

pytestmark = [pytest.mark.postgres]

READ_TIMEOUT_S = 1.0  # the shortest http.read_timeout takes
# How long a test waits for the server to close, at most: the timeout, aiohttp's timer
# granularity and a loaded machine's scheduling, with room to spare.
CLOSED_WITHIN_S = 5.0

_HEAD = "POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN + "\r\n"


@pytest.fixture
async def port(store: Store, intake: Intake, metrics: Metrics) -> AsyncIterator[int]:
    settings = Settings(webhook_token=SecretStr(TOKEN), read_timeout_seconds=READ_TIMEOUT_S)
    app = create_app(
        settings=settings,
        intake=intake,
        metrics=metrics,
        health=HealthChecks(),
        runs_reader=store,
        log=structlog.get_logger("test"),
    )
    runner = create_runner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def _good_request() -> bytes:
    body = json.dumps(sample()).encode()
    return (
        _HEAD + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


async def _closed_after(port: int, sent: bytes) -> tuple[bytes, float]:
    """Open a connection, send ``sent`` and nothing more; (what came back, seconds to close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(sent)
        await writer.drain()
        answer = await read_to_eof(reader, CLOSED_WITHIN_S)
    finally:
        writer.close()
    return answer, time.monotonic() - started


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        b"POST /api/v1/alerts HTT",  # half a request line
        _HEAD.encode(),  # every header but the blank line that ends them
    ],
    ids=["nothing", "half-a-line", "headers-unfinished"],
)
async def test_headers_that_never_finish_are_closed(port: int, sent: bytes) -> None:
    answer, elapsed = await _closed_after(port, sent)
    assert answer == b""
    assert elapsed >= READ_TIMEOUT_S * 0.9  # the timeout, not an immediate refusal


async def test_a_body_that_never_finishes_is_408_then_closed(port: int, store: Store) -> None:
    head = _HEAD + "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    answer, elapsed = await _closed_after(port, head.encode() + b'{"version": "4"')
    assert status_of(answer) == 408
    assert b"not received within 1 s" in answer
    assert elapsed >= READ_TIMEOUT_S * 0.9
    assert await store.queue_depth() == 0


async def test_a_chunked_body_that_never_finishes_is_408(port: int) -> None:
    head = _HEAD + "Transfer-Encoding: chunked\r\n\r\n"
    answer, _ = await _closed_after(port, head.encode() + b'5\r\n{"ver\r\n')
    assert status_of(answer) == 408


async def test_trickling_headers_do_not_extend_the_time(port: int) -> None:
    """One byte every 50 ms keeps the connection busy but never finishes: still closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def trickle() -> None:
        for byte in (_HEAD + "X-Slow: " + "a" * 1000).encode():
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)  # the client's pace: part of the scenario

    sending = asyncio.create_task(trickle())
    try:
        answer = await read_to_eof(reader, CLOSED_WITHIN_S)
    except ConnectionResetError:
        # Closed as well: a byte of the trickle that reached the server's socket after its
        # close, or was left unread in it, is answered by the kernel with a reset, not the end
        # of the stream (a CI run with three test processes met it once).
        answer = b""
    finally:
        sending.cancel()
        writer.close()
    assert answer == b""
    assert time.monotonic() - started < CLOSED_WITHIN_S


async def test_an_idle_kept_alive_connection_is_closed_after_the_timeout(port: int) -> None:
    body = json.dumps(sample()).encode()
    request = (
        _HEAD + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    answer, elapsed = await _closed_after(port, request)
    assert status_of(answer) == 200  # answered, kept alive, then closed when idle
    assert elapsed >= READ_TIMEOUT_S * 0.9


async def test_a_body_sent_in_pieces_within_the_timeout_is_served(port: int) -> None:
    request = _good_request()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        cut = len(request) - 200
        for piece in (request[:cut], request[cut : cut + 100], request[cut + 100 :]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)  # the client's pace, well within the timeout
        answer = await read_to_eof(reader, CLOSED_WITHIN_S)
    finally:
        writer.close()
    assert status_of(answer) == 200


async def test_hundreds_of_half_sent_requests_are_all_closed_and_others_served(
    port: int, store: Store
) -> None:
    half_sent = [
        _closed_after(
            port, _HEAD.encode() if i % 2 else (_HEAD + "Content-Length: 99\r\n\r\n{").encode()
        )
        for i in range(300)
    ]
    waiting = asyncio.gather(*half_sent)
    # Meanwhile a real notification is answered at once.
    assert status_of(await exchange(port, _good_request(), timeout_s=CLOSED_WITHIN_S)) == 200
    results = await asyncio.wait_for(waiting, CLOSED_WITHIN_S * 2)
    assert {answer[:12] for answer, _ in results} == {b"", b"HTTP/1.1 408"}
    assert await store.queue_depth() == 1


def _answered(metrics: Metrics) -> dict[str, float]:
    """The webhook's requests counted so far, by status code."""
    counted: dict[str, float] = {}
    for family in metrics.registry.collect():
        for sample_ in family.samples:
            if sample_.name == "remediator_http_requests_total" and (
                sample_.labels["route"] == "/api/v1/alerts"
            ):
                counted[sample_.labels["code"]] = sample_.value
    return counted


async def test_a_client_that_goes_away_mid_body_is_not_a_store_outage(
    port: int, metrics: Metrics, store: Store
) -> None:
    """The connection lost while the body is read (a sender's timeout, a proxy cut) fails the
    read with aiohttp's ConnectionResetError, an OSError: the middleware took it for the
    store's and answered 503 and logged "store unavailable", which an SRE reads as PostgreSQL
    in trouble, and which held back the next real outage's warning (one per 10 s)."""
    request = _good_request()
    with capture_logs() as logs:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request[: len(request) - 40])
        await writer.drain()
        writer.close()
        await eventually(current(lambda: _answered(metrics)), lambda counted: bool(counted))
    # Counted as the unreadable body it is (nobody is left to read the answer).
    assert _answered(metrics) == {"400": 1.0}
    assert [e for e in logs if "unavailable" in e["event"]] == []
    assert await store.queue_depth() == 0
