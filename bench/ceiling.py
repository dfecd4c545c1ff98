"""The ceiling: an aiohttp handler that reads the body and answers like the receiver, storing
nothing. Run as ``python -m bench.ceiling PORT``.

It runs on the same interpreter settings as ``remediator serve`` (receiver.runtime: uvloop
when installed, the garbage collector's threshold), so the ratio measures what the service
does per webhook, not a difference of runtime."""

from __future__ import annotations

import sys

from aiohttp import web

from receiver.runtime import event_loop_factory, tune_garbage_collector


async def alerts(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"accepted": 0, "duplicates": 0})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/api/v1/alerts", alerts)
    app.router.add_get("/healthz", healthz)
    tune_garbage_collector()
    factory = event_loop_factory()
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
        loop=factory() if factory is not None else None,
    )


if __name__ == "__main__":
    main()
