"""The ceiling: an aiohttp handler that reads the body and answers like the receiver, storing
nothing. Run as ``python -m bench.ceiling PORT``."""

from __future__ import annotations

import sys

from aiohttp import web


async def alerts(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"accepted": 0, "duplicates": 0})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/api/v1/alerts", alerts)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
