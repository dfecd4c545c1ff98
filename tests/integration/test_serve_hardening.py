"""`remediator serve` as a subprocess, as a user (or an attacker) meets it: what reaches its log,
what it says at start-up, and how it refuses to start."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from tests.support.polling import eventually
from tests.support.rawhttp import exchange, status_of
from tests.support.served import ServeFactory

# Sent in a malformed Authorization header; never printed by the service itself.
MARKER = "s3cret-bearer-marker-0123456789"


def _log_lines(output: list[str]) -> list[dict[str, object]]:
    """The JSON log lines of the output (the banner is plain text)."""
    found = []
    for line in output:
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


async def test_a_malformed_request_never_puts_its_header_in_the_log(serve: ServeFactory) -> None:
    served = serve()
    port = urlsplit(served.url).port
    assert port is not None
    request = (
        b"GET /api/v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + MARKER.encode() + b"\x00\r\n\r\n"
    )
    # A flood: twenty of them, each an error with the raw header in aiohttp's own log line.
    for _ in range(20):
        assert status_of(await exchange(port, request)) == 400

    async def reported() -> bool:
        output = "".join(served.output)
        return "bad HTTP request" in output or "Error handling request" in output

    await eventually(reported, timeout_s=20)
    output = "".join(served.output)
    assert MARKER not in output
    assert "Traceback" not in output
    [first, *rest] = [
        e for e in _log_lines(served.output) if str(e.get("event")).startswith("bad HTTP")
    ]
    # The fact and the peer stay; the flood is one line per interval (and says how many).
    assert first["peer"] == "127.0.0.1"
    assert first["error"] in ("BadHttpMessage", "InvalidHeader")
    assert first["status"] == 400
    assert first["level"] == "warning"
    assert len(rest) <= 1
