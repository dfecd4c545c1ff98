"""A TCP relay to a real server that can hold what clients send: a command that reaches the
server late, after its client gave up and other clients' commands ran.

A frozen server (``RedisServer.freeze``) makes a client time out with its command in the
server's socket buffer, but runs nothing else meanwhile, and on thawing runs the buffered
commands of every connection in an order the kernel picks. Held here instead, a command waits
while other connections go straight to the server, and reaches it exactly when the test says:
the order of "the retry's admission and release, then the stale one" is the test's, not the
kernel's. What the server does with it is the server's own: nothing is answered here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from receiver.store import Store

__all__ = ["HeldRelay", "relay_to_postgres", "through"]

_CHUNK = 65536


class HeldRelay:
    """``async with HeldRelay(host, port) as relay``: clients connect to ``relay.port`` and
    reach the server at ``host:port``. While ``hold()`` is in force, what clients send waits
    here, in order, and reaches the server at ``let_through()``, even from a client that has
    closed its connection since (its server connection is closed after)."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Set once something a client sent waits here (since the last ``hold``): the
        # command the test meant to hold is on its way.
        self.holding = asyncio.Event()
        self._hold_on: bytes | None = None
        # ``go_down``: connections are cut, and new ones closed at once, until ``come_back``.
        self._down = False
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "the relay is not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def hold(self) -> None:
        """From now on, what clients send waits here."""
        self.holding.clear()
        self._open.clear()

    def hold_from(self, marker: bytes) -> None:
        """Hold (as ``hold``) from the first chunk a client sends that contains ``marker``
        (a statement's text, ``b"LISTEN"``), that chunk included."""
        self._hold_on = marker

    def go_down(self) -> None:
        """As a server that went away: the connections made so far are cut, and new ones are
        closed as soon as they are made, until ``come_back``."""
        self._down = True
        for writer in list(self._writers):
            writer.close()

    def come_back(self) -> None:
        """Take connections again (new ones: those cut stay cut)."""
        self._down = False

    def let_through(self) -> None:
        """Send on what waited, and everything after it."""
        self._open.set()

    async def __aenter__(self) -> HeldRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _spawn(self, pump: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(pump)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._down:
            client_w.close()
            return
        server_r, server_w = await asyncio.open_connection(*self._upstream)
        self._writers.update((client_w, server_w))
        self._spawn(self._to_server(client_r, server_w))
        self._spawn(self._to_client(server_r, client_w))

    async def _to_server(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):  # the client reset its connection: as a close
            while data := await source.read(_CHUNK):
                if self._hold_on is not None and self._hold_on in data:
                    self._hold_on = None
                    self.hold()
                if not self._open.is_set():
                    self.holding.set()
                await self._open.wait()
                sink.write(data)
                await sink.drain()
        # The client closed: what it sent before that still reaches the server (as bytes in a
        # hung server's socket buffer would), then the server sees the connection end.
        await self._open.wait()
        with contextlib.suppress(OSError):
            sink.write_eof()

    async def _to_client(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(_CHUNK):
                # The client may be gone (it timed out): the reply is dropped.
                with contextlib.suppress(OSError, RuntimeError):
                    sink.write(data)
                    await sink.drain()
        sink.close()


@contextlib.asynccontextmanager
async def relay_to_postgres(database_url: str) -> AsyncIterator[HeldRelay]:
    """A ``HeldRelay`` to the PostgreSQL of ``database_url``, let through at the end (so no
    client waits on it past the test); ``through(database_url, relay.port)`` is the URL that
    goes through it."""
    parts = urlsplit(database_url)
    assert parts.hostname is not None
    assert parts.port is not None
    async with HeldRelay(parts.hostname, parts.port) as made:
        try:
            yield made
        finally:
            made.let_through()


def through(database_url: str, port: int) -> str:
    """``database_url`` with its host and port replaced by the relay's (127.0.0.1:``port``),
    its user and password kept."""
    parts = urlsplit(database_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@contextlib.asynccontextmanager
async def store_through(database_url: str, relay: HeldRelay) -> AsyncIterator[Store]:
    """A store of one connection to the PostgreSQL of ``database_url`` through ``relay``: an
    attempt whose statements the test holds in the network (each call given up after 2 s,
    ``bounded``, as a connection that stalls is). At the end the relay lets everything
    through and the store is closed, waiting at most 30 s for it."""
    made = await Store.connect(through(database_url, relay.port), min_size=1, max_size=1)
    try:
        yield made
    finally:
        relay.let_through()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(made.close(), 30)
