"""The one middleware every request passes: authentication and roles, body limits, JSON errors,
metrics.

One middleware, not one per concern: every layer costs each webhook a coroutine and a wrapper,
and this one runs on every request anyway.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from structlog.typing import FilteringBoundLogger

from receiver.http.auth import PRINCIPAL, Authenticator, Role
from receiver.http.responses import json_response, too_large
from receiver.telemetry import Metrics

__all__ = ["edge_middleware"]


def edge_middleware(
    *,
    auth: Authenticator,
    metrics: Metrics,
    log: FilteringBoundLogger,
    max_body: int,
    webhook_routes: frozenset[str],
    own_auth: tuple[str, ...] = (),
) -> Middleware:
    """The middleware, its dependencies bound once rather than looked up per request.

    ``max_body`` (bytes) is also the application's ``client_max_size``: a handler that reads a
    longer body gets HTTPRequestEntityTooLarge, answered here as a JSON 413.
    ``webhook_routes`` are the routes (canonical paths) that take the webhook credential; every
    other route under /api/, including one that does not exist, takes an operator token, except
    paths under an ``own_auth`` prefix, whose handlers authenticate the caller themselves (the
    approvals API also believes the SSO proxy's header).
    """

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authentication of /api/, body limits, JSON errors and the HTTP metrics."""
        started = time.perf_counter()
        status = 500
        try:
            # Everything under /api/ takes a credential of the route's role, checked before the
            # handler reads anything; health, readiness and metrics stay open for probes and
            # scrapers.
            response: web.StreamResponse
            if request.path.startswith("/api/") and not (
                own_auth and request.path.startswith(own_auth)
            ):
                role = Role.WEBHOOK if _route_name(request) in webhook_routes else Role.OPERATOR
                caller = auth.authorize(request, role)
                if isinstance(caller, web.Response):
                    response = caller
                else:
                    request[PRINCIPAL] = caller
                    response = await handler(request)
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
