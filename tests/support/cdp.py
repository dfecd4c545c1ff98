"""Headless Chromium (Debian's ``chromium``) driven over the Chrome DevTools Protocol.

A small client on aiohttp's websocket: no browser download, no driver. ``browser`` starts
Chromium with a fresh profile and an ephemeral debugging port and yields a ``Page``; a missing
``/usr/bin/chromium`` is ``server_missing`` (skipped locally, a failure in CI). Clicks are real
input events at the element's on-screen centre, so the page's own form does the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.daemons import end
from tests.support.polling import current, eventually_not_none
from tests.support.servers import server_missing

__all__ = ["PLAIN_HTTP_HOST", "Page", "browser"]

# A name the browser resolves to 127.0.0.1 (``--host-resolver-rules``) but does not trust as it
# trusts localhost and loopback addresses: a page served under it over http is what a service
# reached over http at any other address is to the browser (no Fetch Metadata, no Secure
# cookies).
PLAIN_HTTP_HOST = "remediator.test"

CHROMIUM = os.environ.get("REMEDIATOR_CHROMIUM", "/usr/bin/chromium")
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0


class Page:
    """One browser tab: ``call`` a CDP method, wait for an event, read what was requested."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self.requested: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self._replies.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            method = data.get("method")
            if method == "Network.requestWillBeSent":
                self.requested.append(data["params"]["request"]["url"])
            for name, waiter in list(self._waiters):
                if name == method and not waiter.done():
                    waiter.set_result(data.get("params", {}))
                    self._waiters.remove((name, waiter))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[message_id] = future
        await self._ws.send_json({"id": message_id, "method": method, "params": params})
        reply = await asyncio.wait_for(future, CALL_TIMEOUT_S)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def expect(self, event: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``event``; create it before the action that causes it."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((event, future))
        return future

    async def open(self, url: str) -> None:
        loaded = self.expect("Page.loadEventFired")
        await self.call("Page.navigate", url=url)
        await asyncio.wait_for(loaded, CALL_TIMEOUT_S)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def text(self) -> str:
        return str(await self.evaluate("document.body.innerText"))

    async def click(self, selector: str) -> None:
        """A real mouse click at the centre of ``selector``'s element."""
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView(); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.call(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def type_into(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.call("Input.insertText", text=text)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


async def _port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """The debugging port from the file Chromium writes once it listens."""
    marker = profile / "DevToolsActivePort"

    def port() -> int | None:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(marker.read_text().splitlines()[0])
        return None

    return await eventually_not_none(
        current(port), timeout_s=START_TIMEOUT_S, what="chromium's debugging port"
    )


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Page]:
    if shutil.which(CHROMIUM) is None:
        server_missing(f"Chromium ({CHROMIUM}; apt-get install chromium)")
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # tests run as root in CI
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--host-resolver-rules=MAP {PLAIN_HTTP_HOST} 127.0.0.1",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    session = aiohttp.ClientSession()
    page: Page | None = None
    try:
        port = await _port(profile, process)
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        tab = next(t for t in targets if t.get("type") == "page")
        ws = await session.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.call("Page.enable")
        await page.call("Network.enable")
        yield page
    finally:
        if page is not None:
            await page.close()
        await session.close()
        end(process, 10)
