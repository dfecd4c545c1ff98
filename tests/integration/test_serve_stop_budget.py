"""A request that never completes does not hold ``remediator serve``'s stop past its budget:
aiohttp gives it ``HTTP_SHUTDOWN_S``, then cuts it off (receiver/stop_budget.py).

Before, aiohttp's default shutdown timeout (60 s) held the stop, and the steps' grace came only
after it: past the pod's 30 s termination grace, the kubelet killed the process. A real
``remediator serve`` on the embedded default, a client that sends a request's headers and
never its body, and the wall clock: real time passes here on purpose.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

from receiver.stop_budget import HTTP_SHUTDOWN_S
from tests.support.polling import current, eventually
from tests.support.served import ServeFactory

# What stopping takes beyond the request's two waits here (nothing else is in progress): the
# audit row, closing, the embedded servers' stop and the interpreter's exit. Far from aiohttp's
# own 60 s, which this test tells apart.
SLACK_S = 20.0


async def test_a_request_that_never_completes_is_cut_off_within_the_budget(
    serve: ServeFactory,
) -> None:
    served = serve({"REMEDIATOR_READ_TIMEOUT": "5m"})  # the server's own timeout stays out
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + served.token.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    try:
        signalled = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        await eventually(
            current(lambda: any("stopping: finishing" in line for line in served.output)),
            what="the service stopping",
        )
        try:
            code = await asyncio.to_thread(served.proc.wait, 2 * HTTP_SHUTDOWN_S + SLACK_S)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - signalled
    finally:
        writer.close()
    assert code == 0, f"exit {code} after {took:.1f}s\n" + "".join(served.output[-30:])
    assert "Traceback" not in "".join(served.output)
