"""HTTP over a plain socket, for requests a client library will not send: bytes that are not
UTF-8 in a header, headers or bodies that never finish."""

from __future__ import annotations

import asyncio

__all__ = ["exchange", "read_to_eof", "status_of"]


async def read_to_eof(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """Everything until the server closes the connection; TimeoutError if it does not in time."""
    chunks = []
    async with asyncio.timeout(timeout_s):
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def exchange(port: int, request: bytes, *, timeout_s: float = 10.0) -> bytes:
    """Send ``request`` as it is to 127.0.0.1:``port``; the whole answer, up to the close.

    The request should say ``Connection: close``.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await read_to_eof(reader, timeout_s)
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    """The status code of the first answer in ``response`` (b"HTTP/1.1 401 ...")."""
    first = response.split(b"\r\n", 1)[0].split()
    if len(first) < 2 or not first[0].startswith(b"HTTP/"):
        raise AssertionError(f"not an HTTP answer: {response[:80]!r}")
    return int(first[1])
