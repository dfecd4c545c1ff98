"""The one middleware every request passes: authentication, body limits, JSON errors, metrics.

One middleware, not one per concern: every layer costs each webhook a coroutine and a wrapper,
and this one runs on every request anyway.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from structlog.typing import FilteringBoundLogger

from receiver.http.auth import Authenticator
from receiver.http.responses import json_response, too_large
from receiver.telemetry import Metrics

__all__ = ["edge_middleware"]


def edge_middleware(
    *,
    auth: Authenticator,
    metrics: Metrics,
    log: FilteringBoundLogger,
    max_body: int,
    own_auth: tuple[str, ...] = (),
) -> Middleware:
    """The middleware, its dependencies bound once rather than looked up per request.

    ``max_body`` (bytes) is also the application's ``client_max_size``: a handler that reads a
    longer body gets HTTPRequestEntityTooLarge, answered here as a JSON 413. Paths under an
    ``own_auth`` prefix are authenticated by their handlers, not with the webhook credential.
    """

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authentication of /api/, body limits, JSON errors and the HTTP metrics."""
        started = time.perf_counter()
        status = 500
        try:
            # Everything under /api/ takes the webhook's credentials, checked before the handler
            # reads anything; health, readiness and metrics stay open for probes and scrapers.
            response: web.StreamResponse
            if (
                request.path.startswith("/api/")
                and not request.path.startswith(own_auth)
                and not auth.check(request)
            ):
                response = auth.refuse()
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPRequestEntityTooLarge:
            status = 413
            return too_large(max_body)
        except web.HTTPException as exc:
            status = exc.status
            if exc.status >= 400 and exc.content_type != "application/json":
                return json_response(
                    {"error": exc.reason},
                    exc.status,
                    {k: v for k, v in exc.headers.items() if k.lower() in ("allow",)},
                )
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            # No stack trace in the response; the log has it.
            log.exception("unhandled error", method=request.method, path=request.path)
            return json_response({"error": "internal server error"}, 500)
        finally:
            metrics.http_request(
                _route_name(request), request.method, status, time.perf_counter() - started
            )

    return edge


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical
