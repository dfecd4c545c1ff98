"""Structured logging set-up and the service's Prometheus metrics.

``Metrics`` owns its own CollectorRegistry: two services in one process (tests, benchmarks)
never share counters, and nothing registers itself at import time. What keeps the log bounded
(``Throttle``, the filter of aiohttp's malformed-request records) is ``receiver.log_limits``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TextIO

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from receiver.log_limits import (
    BAD_REQUEST_KEYS,
    BAD_REQUEST_LOG_EVERY_S,
    BadRequestFilter,
    Throttle,
)

__all__ = ["Metrics", "configure_logging"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def configure_logging(
    level: str = "info", fmt: str = "json", *, stream: TextIO | None = None
) -> None:
    """Route structlog and the standard library (aiohttp, asyncpg) through one renderer.

    ``fmt`` is ``json`` (one object per line, the default, for log shippers) or ``console``
    (coloured when ``stream`` is a terminal). Logging is process-wide by nature; this is the
    one place that configures it, called once by the CLI.
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
    # aiohttp reports a malformed request with its raw bytes (a token included): see the filter.
    bad_requests = BadRequestFilter(Throttle(BAD_REQUEST_LOG_EVERY_S))
    for name in ("aiohttp.server", "aiohttp.access"):
        logger = logging.getLogger(name)
        for old_filter in [f for f in logger.filters if isinstance(f, BadRequestFilter)]:
            logger.removeFilter(old_filter)
        logger.addFilter(bad_requests)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class Metrics:
    """Every metric the service exports, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.alerts_received = Counter(
            "remediator_alerts_received",
            "Alerts received in webhook notifications, by alert status.",
            ["status"],
            registry=r,
        )
        self.alert_duplicates = Counter(
            "remediator_alert_duplicates",
            "Alerts received that were already stored (retries, re-sends, HA peers).",
            registry=r,
        )
        self.runs = Counter(
            "remediator_runs",
            "Remediation runs finished, by rule and outcome.",
            ["rule", "outcome"],
            registry=r,
        )
        self.verifications = Counter(
            "remediator_verifications",
            "Verifications ended, by rule and result (verified, not_resolved, recurred).",
            ["rule", "result"],
            registry=r,
        )
        self.announcements = Counter(
            "remediator_announcements",
            "Run announcements attempted, by moment and whether the channel took them.",
            ["event", "delivered"],
            registry=r,
        )
        self.guard_refusals = Counter(
            "remediator_guard_refusals",
            "Plans refused by a guard, by guard.",
            ["guard"],
            registry=r,
        )
        self.action_duration = Histogram(
            "remediator_action_duration_seconds",
            "Time an action took, by action and outcome.",
            ["action", "outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.queue_depth = Gauge(
            "remediator_queue_depth",
            "Alert events stored and not yet processed.",
            registry=r,
        )
        self.dead_letters = Gauge(
            "remediator_dead_letters",
            "Alert events and jobs that failed worker.max_attempts times and wait for an "
            "operator to retry or drop them, by queue (events, jobs).",
            ["queue"],
            registry=r,
        )
        self.http_requests = Counter(
            "remediator_http_requests",
            "HTTP requests served, by route, method and status code.",
            ["route", "method", "code"],
            registry=r,
        )
        self.http_duration = Histogram(
            "remediator_http_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        # labels() validates and locks on every call, a visible cost per webhook; the label sets
        # here are few and fixed (routes, statuses, rules), so each child is looked up once.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # Small helpers so callers do not repeat label names.
    def alert_received(self, status: str, count: int = 1) -> None:
        self._child(self.alerts_received, status).inc(count)

    def duplicates(self, count: int) -> None:
        if count:
            self.alert_duplicates.inc(count)

    def run_finished(self, rule: str, outcome: str) -> None:
        self._child(self.runs, rule, outcome).inc()

    def verification_ended(self, rule: str, result: str) -> None:
        self._child(self.verifications, rule, result).inc()

    def announced(self, event: str, delivered: bool) -> None:
        self._child(self.announcements, event, "true" if delivered else "false").inc()

    def guard_refused(self, guard: str) -> None:
        self._child(self.guard_refusals, guard).inc()

    def action_finished(self, action: str, outcome: str, seconds: float) -> None:
        self._child(self.action_duration, action, outcome).observe(seconds)

    def http_request(self, route: str, method: str, code: int, seconds: float) -> None:
        # Any token is a valid HTTP method: a client must not mint label values (series).
        method = method if method in _METHODS else "other"
        self._child(self.http_requests, route, method, str(code)).inc()
        self._child(self.http_duration, route).observe(seconds)

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def track_queue_depth(self, read: Callable[[], Awaitable[int]]) -> None:
        """Refresh the queue depth from ``read()`` (e.g. ``store.queue_depth``) on every scrape."""

        async def refresh() -> None:
            self.queue_depth.set(await read())

        self._refreshers.append(refresh)

    def track_dead_letters(self, read: Callable[[], Awaitable[Mapping[str, int]]]) -> None:
        """Refresh the dead letters per queue from ``read()`` (e.g. ``store.dead_counts``, which
        returns ``{"events": n, "jobs": m}``) on every scrape."""

        async def refresh() -> None:
            for queue, count in (await read()).items():
                self._child(self.dead_letters, queue).set(count)

        self._refreshers.append(refresh)

    async def refresh(self) -> None:
        """Run the scrape-time refreshers; a failing one leaves its gauge at the last value."""
        for refresher in self._refreshers:
            try:
                await refresher()
            except Exception:  # noqa: S112 - a scrape must not fail because the store is down
                continue

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
