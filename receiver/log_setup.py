"""Structured logging set-up: structlog and the standard library (aiohttp, asyncpg) through one
renderer, JSON lines or a console. What keeps the log bounded (``Throttle``, the filter of
aiohttp's malformed-request records) is ``receiver.log_limits``.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from receiver.log_limits import (
    BAD_REQUEST_KEYS,
    BAD_REQUEST_LOG_EVERY_S,
    BadRequestFilter,
    Throttle,
)

__all__ = ["configure_logging"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


# The logger kubernetes_asyncio writes each response body to (``client/rest.py``).
_KUBE_BODIES = "kubernetes_asyncio.client.rest"


def configure_logging(
    level: str = "info",
    fmt: str = "json",
    *,
    stream: TextIO | None = None,
    process: str | None = None,
) -> None:
    """Route structlog and the standard library (aiohttp, asyncpg) through one renderer.

    ``fmt`` is ``json`` (one object per line, the default, for log shippers) or ``console``
    (coloured when ``stream`` is a terminal). ``process``: the name every line carries as
    ``process`` (a worker process of ``serve``, ``worker-1``: its lines share ``serve``'s
    output), whichever logger wrote it; None, no such key. Logging is process-wide by nature;
    this is the one place that configures it, called once by the CLI (and a worker process).
    """
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    out = stream if stream is not None else sys.stderr

    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if process is not None:
        shared.insert(0, _named(process))
    # The standard library's records (aiohttp's) carry only the keys our own filter sets.
    foreign: list[structlog.typing.Processor] = [
        *shared,
        structlog.stdlib.ExtraAdder(allow=BAD_REQUEST_KEYS),
    ]
    renderer: structlog.typing.Processor
    # Tracebacks never show local variables: a frame's locals can hold a token, a password
    # or a DSN, and secrets must not reach the logs.
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(),
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
        )
    elif fmt == "json":
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        raise ValueError(f"unknown log format {fmt!r}")

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=foreign,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # One line per request is the job of our own metrics and logs, not aiohttp's access log.
    logging.getLogger("aiohttp.access").setLevel(max(numeric, logging.WARNING))
    # kubernetes_asyncio logs every API answer's body at debug (client/rest.py): a Deployment's
    # holds its containers' environment, a password written as a plain value included. Our
    # own lines say what a step read and changed; at debug the body put the cluster's secrets
    # in the log.
    logging.getLogger(_KUBE_BODIES).setLevel(max(numeric, logging.INFO))
    # aiohttp reports a malformed request with its raw bytes (a token included): see the filter.
    bad_requests = BadRequestFilter(Throttle(BAD_REQUEST_LOG_EVERY_S))
    for name in ("aiohttp.server", "aiohttp.access"):
        logger = logging.getLogger(name)
        for old_filter in [f for f in logger.filters if isinstance(f, BadRequestFilter)]:
            logger.removeFilter(old_filter)
        logger.addFilter(bad_requests)


def _named(process: str) -> structlog.typing.Processor:
    """A processor that puts ``process`` on every line: a worker process's pipeline, worker
    and library loggers are bound to nothing of it, and their lines, in ``serve``'s output,
    read as ``serve``'s own without it."""

    def add(
        _logger: object, _method: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event.setdefault("process", process)
        return event

    return add
