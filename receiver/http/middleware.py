"""The one middleware every request passes: authentication and roles, body limits, query
parameters no route can take, content codings it does not decode (415), bodies that cannot be
decoded (400), JSON errors (a store out of reach is 503 on every route), metrics.

One middleware, not one per concern: every layer costs each webhook a coroutine and a wrapper,
and this one runs on every request anyway.

aiohttp bounds neither how long a client may take to send a body nor, by default, its headers
(``create_runner`` bounds those). Here a body that has not fully arrived when the handler starts
gets a deadline: if it is still incomplete after ``read_timeout_s``, reading it raises
``BodyTimeout``, the client gets 408 and its connection is closed at once. A body sent one byte a
minute cannot hold a connection (and a handler) for ever, whichever way the handler reads it.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from structlog.typing import FilteringBoundLogger

from receiver.approvals.desk import LINK_PATH
from receiver.http.auth import PRINCIPAL, Authenticator, Role
from receiver.http.deps import STORE_DOWN_LOG
from receiver.http.filters import BadParameter, check_query, unknown_parameter
from receiver.http.responses import json_response, too_large
from receiver.log_limits import Throttle
from receiver.store import StoreUnavailable, is_unavailable
from receiver.telemetry import Metrics

__all__ = ["DECODED_CODINGS", "LINK_REDACTED", "BodyTimeout", "edge_middleware", "logged_path"]

# What a log line shows in place of an approval link's token.
LINK_REDACTED = "<token>"


class BodyTimeout(TimeoutError):
    """The request's body did not arrive within the read timeout (answered 408).

    A TimeoutError, so aiohttp, which drains an unread body after the answer, stops at once
    instead of logging it as an error.
    """


# The route name of a request no route takes (its metrics label).
UNMATCHED = "unmatched"


def _under(path: str, prefixes: tuple[str, ...], below: tuple[str, ...]) -> bool:
    """``path`` is one of ``prefixes`` or below one (``/api/v1/approvals/x``), not merely
    beginning with its text: ``/api/v1/approvalsX`` went past the credential check.
    ``below`` is ``prefixes`` each with "/" appended, worked out once rather than per request
    (the generator and the concatenations were about 1.5 us of every webhook)."""
    return path in prefixes or path.startswith(below)


def logged_path(path: str) -> str:
    """``path`` as a log line may show it: the token of an approval link (``/approve/<token>``)
    is replaced. The token alone opens the approval page until it expires, and logs are read
    by more people, and kept longer, than the links are meant for."""
    head, sep, _token = path.partition(LINK_PATH)
    return f"{head}{sep}{LINK_REDACTED}" if sep else path


def edge_middleware(
    *,
    auth: Authenticator,
    metrics: Metrics,
    log: FilteringBoundLogger,
    max_body: int,
    read_timeout_s: float,
    webhook_routes: frozenset[str],
    own_auth: tuple[str, ...] = (),
    page_paths: tuple[str, ...] = (),
    query_routes: frozenset[str] = frozenset(),
) -> Middleware:
    """The middleware, its dependencies bound once rather than looked up per request.

    ``max_body`` (bytes) is also the application's ``client_max_size``: a declared
    Content-Length over it is refused before the handler runs, and a handler that reads a longer
    (chunked) body gets HTTPRequestEntityTooLarge; both are answered here as a JSON 413.
    ``read_timeout_s`` bounds the time to receive a body once the headers are in (408 after it).
    ``webhook_routes`` are the routes (canonical paths) that take the webhook credential; every
    other route under /api/, including one that does not exist, takes an operator token (a
    method a route does not take is 405 whatever the credential), except
    paths under an ``own_auth`` prefix, whose handlers authenticate the caller themselves (the
    approvals API also believes the SSO proxy's header). A query no route takes is a JSON 400
    here, except on paths under a ``page_paths`` prefix: those pages check it themselves and
    answer with a page (``receiver.http.pages``). A route under /api/ that is not one of the
    ``query_routes`` (those that read their query, and the webhook's, whose URL in
    Alertmanager's configuration may carry one) reads none, and refuses one (400 naming it):
    ``PUT /api/v1/pause?for=2h`` paused until resumed, the query ignored.
    """

    own_below = tuple(prefix + "/" for prefix in own_auth)
    # At most one line per 10 s about refused credentials: a sender with a wrong token retries.
    refusals = Throttle(10.0)
    strays = Throttle(10.0)  # and about POSTs no route takes
    pages_below = tuple(prefix + "/" for prefix in page_paths)

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authentication of /api/, body limits, JSON errors and the HTTP metrics."""
        started = time.perf_counter()
        status = 500
        route = _route_name(request)
        try:
            # Everything under /api/ takes a credential of the route's role, checked before the
            # handler reads anything; health, readiness and metrics stay open for probes and
            # scrapers.
            refused: web.Response | None = None
            if (
                request.path.startswith("/api/")
                and not _under(request.path, own_auth, own_below)
                and not _method_not_allowed(request)
            ):
                role = Role.WEBHOOK if route in webhook_routes else Role.OPERATOR
                caller = auth.authorize(request, role)
                if isinstance(caller, web.Response):
                    refused = caller
                    if caller.status == 401 and (held := refusals.ready()) is not None:
                        # Said here too: the sender's log is not the operator's, and a wrong
                        # token in Alertmanager's configuration loses every notification.
                        log.warning(
                            "request refused: no valid credential",
                            path=logged_path(request.path),
                            role=str(role),
                            credential_sent=bool(request.headers.get("Authorization")),
                            remote=request.remote,
                            held_back=held,
                        )
                    if caller.status == 403 and route == UNMATCHED and webhook_routes:
                        refused = _webhook_path_hint(webhook_routes)
                else:
                    request[PRINCIPAL] = caller
            response: web.StreamResponse
            if refused is not None:
                response = refused
            elif (
                request.query_string
                and not _under(request.path, page_paths, pages_below)
                and (bad := _bad_query(request) or _query_not_read(request, route, query_routes))
                is not None
            ):
                response = bad
            elif (length := request.content_length) is not None and length > max_body:
                # Refused before reading: the body would be read up to the limit only to be refused.
                response = too_large(max_body)
            elif request.body_exists and (coding := _unsupported_coding(request)) is not None:
                # Marked ended, as below: aiohttp would otherwise read the body after the
                # answer through a decoder, and log its failure as an unhandled exception.
                request.content.feed_eof()
                response = _unrouted(request) or _refuse_coding(coding)
            elif request.content.is_eof():
                # No body, or all of it came with the headers: the common case, no timer.
                response = await handler(request)
            else:
                response = await _with_body_deadline(request, handler, read_timeout_s)
            status = response.status
            return response
        except web.HTTPRequestEntityTooLarge:
            status = 413
            return too_large(max_body)
        except web.RequestPayloadError as exc:
            # A body aiohttp cannot decode (a Content-Encoding: gzip or deflate body that is no
            # such stream, a malformed chunked body): the client's fault, on whichever route read
            # it. The stream is broken past this point: it is marked ended, so that aiohttp does
            # not read it again after the answer (which would raise and log a traceback), and the
            # connection is closed.
            request.content.feed_eof()
            status = 400
            return _unreadable_body(_payload_problem(exc))
        except BodyTimeout as exc:
            status = 408
            timed_out = json_response({"error": str(exc)}, 408)
            timed_out.force_close()
            return timed_out
        except web.HTTPException as exc:
            status = exc.status
            allow = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            if (
                exc.status in (404, 405)
                and route == UNMATCHED  # the router's, not a handler's "no such thing"
                and request.method == "POST"
                and webhook_routes
                and not request.path.startswith("/api/")  # an operator's typo is not this
            ):
                # A webhook_config URL without its path (``http://remediator:9095``): Alertmanager
                # does not retry a 4xx, so every notification is lost; its log shows this body.
                # That URL posts to ``/``, a page's path (GET only): its 405 said only "Method
                # Not Allowed", and nothing was logged.
                if (held := strays.ready()) is not None:
                    log.warning(
                        "POST to a path no route takes: is a webhook's URL missing its path?",
                        path=logged_path(request.path),
                        remote=request.remote,
                        held_back=held,
                    )
                missing = _webhook_path_missing(webhook_routes, exc.reason)
                return json_response({"error": missing}, exc.status, allow)
            if exc.status >= 400 and exc.content_type != "application/json":
                return json_response({"error": exc.reason}, exc.status, allow)
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if exc is request.content.exception():
                # The client went away while its body was read (its timeout, a proxy's cut):
                # aiohttp fails the read with a ConnectionResetError, an OSError, which is no
                # store's. Taken for one, it was a 503 and a "store unavailable" warning,
                # which also held back the next real outage's. Nobody reads this answer.
                status = 400
                return _unreadable_body("the connection was lost before all of it arrived")
            if isinstance(exc, StoreUnavailable) or is_unavailable(exc):
                # Whatever route met the outage: the contract is 503 ("try again"), never 500.
                status = 503
                # Every request of an outage says the same: at most one line per interval.
                held_back = request.app[STORE_DOWN_LOG].ready()
                if held_back is not None:
                    log.warning(
                        "store unavailable",
                        path=logged_path(request.path),
                        error=str(exc),
                        not_logged_since_last=held_back,
                    )
                return json_response({"error": "store unavailable"}, 503)
            # No stack trace in the response; the log has it.
            log.exception("unhandled error", method=request.method, path=logged_path(request.path))
            return json_response({"error": "internal server error"}, 500)
        finally:
            metrics.http_request(route, request.method, status, time.perf_counter() - started)

    return edge


async def _with_body_deadline(
    request: web.Request, handler: Handler, timeout_s: float
) -> web.StreamResponse:
    """Run the handler; if the body is still incomplete after ``timeout_s``, reading it raises
    BodyTimeout (reading before the deadline is unaffected, and so is a body that completed)."""
    body = request.content

    def expire() -> None:
        if not body.is_eof():
            body.set_exception(BodyTimeout(f"request body not received within {timeout_s:g} s"))

    timer = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        return await handler(request)
    finally:
        timer.cancel()


def _unreadable_body(problem: str) -> web.Response:
    """The 400 for a body that cannot be read (``problem`` says why), closing the connection:
    the stream is broken past this point."""
    unreadable = json_response(
        {"error": f"request body cannot be read: {problem}", "field": "body"}, 400
    )
    unreadable.force_close()
    return unreadable


def _payload_problem(exc: web.RequestPayloadError) -> str:
    """What aiohttp says of a body it could not read, e.g. ``Can not decode content-encoding:
    gzip`` (its ``message``, without the status it prefixes ``str()`` with)."""
    message = getattr(exc, "message", "") or str(exc)
    return " ".join(str(message).split()) or "malformed body"


# The content codings a body may come in: those aiohttp decodes, spelt as it recognises them (one
# coding, the header's whole value; it takes any other value, "x-bogus" or "gzip, gzip", for
# identity and hands the handler undecoded bytes). br and zstd: aiohttp decodes them only with
# optional packages (Brotli, backports.zstd); without them its HTTP parser answers a text 400
# itself, before any middleware runs, and with them this refuses them as any other (415).
DECODED_CODINGS = ("gzip", "deflate")


def _unsupported_coding(request: web.Request) -> str | None:
    """The request's Content-Encoding when the body is in a coding that is not decoded here
    (``DECODED_CODINGS``, or identity), else None."""
    headers = request.headers
    if hdrs.CONTENT_ENCODING not in headers:
        return None  # nearly every webhook: no list to build
    values = headers.getall(hdrs.CONTENT_ENCODING)
    codings = [c.strip().lower() for value in values for c in value.split(",")]
    if all(c in ("", "identity") for c in codings):
        return None
    if len(values) == 1 and values[0].strip().lower() in DECODED_CODINGS:
        return None
    return ", ".join(v.strip() for v in values)


def _refuse_coding(coding: str) -> web.Response:
    """415 for a body in ``coding``, naming the header and the codings taken (RFC 9110
    15.5.16; its Accept-Encoding lists them, as 12.5.3 says a 415 of a coding should)."""
    accepted = ["identity", *DECODED_CODINGS]
    refused = json_response(
        {
            "error": f"Content-Encoding {coding[:100]!r} is not supported: send the body"
            f" uncompressed (identity) or as {' or '.join(DECODED_CODINGS)}",
            "header": hdrs.CONTENT_ENCODING,
            "accepted": accepted,
        },
        415,
        {hdrs.ACCEPT_ENCODING: ", ".join(DECODED_CODINGS)},
    )
    # The body is left unread: the connection closes rather than aiohttp reading it through
    # a decoder after the answer.
    refused.force_close()
    return refused


def _bad_query(request: web.Request) -> web.Response | None:
    """400 naming a query parameter no route can take (U+0000 anywhere in it, a %-escape that
    is not UTF-8, given twice), else None."""
    try:
        check_query(request.query, request.rel_url.raw_query_string)
    except BadParameter as exc:
        return json_response({"error": exc.message, "parameter": exc.parameter}, 400)
    return None


def _query_not_read(
    request: web.Request, route: str, query_routes: frozenset[str]
) -> web.Response | None:
    """400 naming the first query parameter of a route under /api/ that reads none (not one of
    ``query_routes``), else None. Ignored, it did what the caller did not ask: ``?for=2h`` on
    a pause paused until someone resumed. An unknown path is left to its 404."""
    if route == UNMATCHED or route in query_routes or not request.path.startswith("/api/"):
        return None
    name = next(iter(request.query), None)
    if name is None:  # "?" or "?&": nothing given
        return None
    where = " (give its fields in the JSON body)" if request.method in ("PUT", "POST") else ""
    bad = unknown_parameter(name)
    message = f"{bad.message}: {request.method} {route} takes no query parameter{where}"
    return json_response({"error": message, "parameter": bad.parameter}, 400)


def _unrouted(request: web.Request) -> web.Response | None:
    """The 404 or 405 (with Allow) of a request no route takes, as JSON, closing the connection
    (its body is left unread); None when a route takes it. Said before a 415: what a body is
    in does not matter when nothing would read it."""
    error = getattr(request.match_info, "http_exception", None)
    if not isinstance(error, web.HTTPException):
        return None
    allow = {k: v for k, v in error.headers.items() if k.lower() == "allow"}
    unrouted = json_response({"error": error.reason}, error.status, allow)
    unrouted.force_close()
    return unrouted


def _method_not_allowed(request: web.Request) -> bool:
    """The path is a route, the method is not one of its: 405 (with Allow) whatever the
    credential, as the route's existence says nothing a 405 would not."""
    error = getattr(request.match_info, "http_exception", None)
    return isinstance(error, web.HTTPMethodNotAllowed)


def _webhook_path_hint(webhook_routes: frozenset[str]) -> web.Response:
    """The 403 of the webhook credential on a path under /api/ that no route takes: a URL
    mistyped in Alertmanager's webhook_config (``/api/v2/alerts``, a trailing slash). Said as
    the wrong role's 403 ("an operator token"), it sent the sender's owner to give Alertmanager
    an operator's token; this names the path the credential posts to. Still a 403: without a
    credential an unknown path is a 401 as any other, and what exists stays unsaid."""
    message = (
        f"forbidden: the webhook credential calls {_webhook_paths(webhook_routes)} only; "
        "check the webhook's URL"
    )
    return json_response({"error": message}, 403)


def _webhook_path_missing(webhook_routes: frozenset[str], reason: str) -> str:
    """The 404 or 405 (``reason``: "Not Found", "Method Not Allowed") of a POST no route takes,
    naming where alerts go (the paths are public: the README's; nothing about credentials is
    said)."""
    paths = _webhook_paths(webhook_routes)
    return f"{reason.lower()}: alerts are posted to {paths}; check the webhook's URL and its path"


def _webhook_paths(webhook_routes: frozenset[str]) -> str:
    """``POST /api/v1/alerts`` (each webhook route, joined by "or"), as the answers name them."""
    return " or ".join(f"POST {path}" for path in sorted(webhook_routes))


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return UNMATCHED
    return resource.canonical
