"""The service's Prometheus metrics (the logging set-up is ``receiver.log_setup``).

``Metrics`` owns its own CollectorRegistry: two services in one process (tests, benchmarks)
never share counters, and nothing registers itself at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

from receiver.deadlines import answer_within
from receiver.metrics_merge import KeptCounts, Reading, merged

__all__ = ["Metrics"]

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
        self.alert_label_clashes = Counter(
            "remediator_alert_label_clashes",
            "Alerts dropped as duplicates although their labels differ from the stored alert"
            " with the same fingerprint and startsAt (another sender, or a forged payload; also"
            " counted in remediator_alert_duplicates_total).",
            registry=r,
        )
        self.alert_truncations = Counter(
            "remediator_alerts_truncated",
            "Alerts Alertmanager left out of webhook notifications (max_alerts; the body's"
            " truncatedAlerts), summed over the notifications received: they never reached the"
            " receiver. One left out of several notifications (re-sends, HA peers) counts in each.",
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
            "Run announcements, by moment and whether the channel took them (true, false), or"
            " folded into a refusal digest (folded).",
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
        self.time_to_resolve = Histogram(
            "remediator_time_to_resolve_seconds",
            "Seconds from a run's creation to its alert's resolution, for runs whose steps ran,"
            " by rule.",
            ["rule"],
            buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
            registry=r,
        )
        self.approvals = Counter(
            "remediator_approvals",
            "Approvals of risky steps by rule and state: requested, approved, rejected, expired,"
            " cancelled, superseded (each move counted once, when it happens).",
            ["rule", "state"],
            registry=r,
        )
        self.approvals_pending = Gauge(
            "remediator_approvals_pending",
            "Approvals waiting for a decision (read from the store at scrape time).",
            registry=r,
        )
        self.approval_next_expiry = Gauge(
            "remediator_approval_next_expiry_seconds",
            "Seconds until the first pending approval expires; +Inf when none is pending.",
            registry=r,
        )
        # Until the store has been read, nothing is known to expire.
        self.approval_next_expiry.set(math.inf)
        self.breaker_open = Gauge(
            "remediator_breaker_open",
            "1 while a rule's circuit breaker is open (read from Redis at scrape time).",
            ["rule"],
            registry=r,
        )
        self.paused = Gauge(
            "remediator_paused",
            "1 while remediation is paused (the kill switch), else 0.",
            registry=r,
        )
        self.audit_outbox_records = Gauge(
            "remediator_audit_outbox_records",
            "Pauses and resumes waiting in Redis to be written to the audit log (the audit"
            " outbox, at most 1000), as the last drain read them (every 5 s).",
            registry=r,
        )
        self.audit_outbox_oldest_age = Gauge(
            "remediator_audit_outbox_oldest_age_seconds",
            "Seconds the oldest record in the audit outbox has waited, as the last drain read"
            " it (every 5 s); 0 when none waits.",
            registry=r,
        )
        # As Prometheus' and Alertmanager's own *_config_last_reload_successful: a rule file
        # pushed with a mistake keeps the last good set, and only these tell a monitor so.
        self.rules_reload_ok = Gauge(
            "remediator_rules_last_reload_successful",
            "1 when the last load of the rules directory succeeded, 0 while the service runs on"
            " an older rule set because the last reload failed.",
            registry=r,
        )
        self.rules_reload_time = Gauge(
            "remediator_rules_last_reload_success_timestamp_seconds",
            "When the rules in force were loaded (Unix seconds).",
            registry=r,
        )
        self.component_up = Gauge(
            "remediator_component_up",
            "1 when a component answers its readiness check at scrape time, else 0, by"
            " component (store, redis, kubernetes).",
            ["component"],
            registry=r,
        )
        self.worker_processes = Gauge(
            "remediator_worker_processes",
            "Processes running the worker, serve's own included: configured (worker.processes),"
            " and answering (those whose counts this scrape includes).",
            ["state"],
            registry=r,
        )
        # The other worker processes' counters and histograms, as read at the last scrape.
        self._others: list[list[Metric]] = []
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
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

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

    def label_clashes(self, count: int) -> None:
        """``count`` alerts of one notification dropped as duplicates whose labels differ from
        the copy kept (``receiver.store.label_clashes``)."""
        if count:
            self.alert_label_clashes.inc(count)

    def alerts_truncated(self, count: int) -> None:
        """A notification said Alertmanager left ``count`` alerts of its group out of it."""
        if count:
            self.alert_truncations.inc(count)

    def run_finished(self, rule: str, outcome: str) -> None:
        self._child(self.runs, rule, outcome).inc()

    def verification_ended(self, rule: str, result: str) -> None:
        self._child(self.verifications, rule, result).inc()

    def announced(self, event: str, delivered: bool, *, folded: bool = False) -> None:
        """One announcement of ``event``; ``folded`` into a refusal digest, not sent alone."""
        state = "folded" if folded else "true" if delivered else "false"
        self._child(self.announcements, event, state).inc()

    def guard_refused(self, guard: str) -> None:
        self._child(self.guard_refusals, guard).inc()

    def run_resolved(self, rule: str, seconds: float) -> None:
        """A run whose steps ran saw its alert resolve ``seconds`` after it was created."""
        self._child(self.time_to_resolve, rule).observe(max(0.0, seconds))

    def approval(self, rule: str, state: str) -> None:
        """An approval of ``rule`` moved to ``state`` (requested for a new one)."""
        self._child(self.approvals, rule, state).inc()

    def action_finished(self, action: str, outcome: str, seconds: float) -> None:
        self._child(self.action_duration, action, outcome).observe(seconds)

    def http_request(self, route: str, method: str, code: int, seconds: float) -> None:
        # Any token is a valid HTTP method: a client must not mint label values (series).
        method = method if method in _METHODS else "other"
        # Both children in one lookup (every request passes here); the key holds only
        # bounded values (routes, the methods above, status codes), so the cache stays small.
        key = (route, method, code)
        children = self._http_children.get(key)
        if children is None:
            children = self._http_children[key] = (
                self._child(self.http_requests, route, method, str(code)),
                self._child(self.http_duration, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def rules_reloaded(self, ok: bool, at: float) -> None:
        """A load of the rules directory at ``at`` (Unix seconds): ``ok`` or failed."""
        self.rules_reload_ok.set(1 if ok else 0)
        if ok:
            self.rules_reload_time.set(at)

    def audit_outbox(self, records: int, oldest_age_s: float) -> None:
        """What the audit outbox's drain read: ``records`` waiting, the oldest for
        ``oldest_age_s`` seconds (``receiver.audit_outbox``; no read of its own per scrape)."""
        self.audit_outbox_records.set(records)
        self.audit_outbox_oldest_age.set(oldest_age_s)

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

    def track_approvals(self, read: Callable[[], Awaitable[tuple[int, float | None]]]) -> None:
        """Refresh the pending approvals from ``read()`` (e.g. ``store.approval_backlog``:
        how many are pending, and seconds until the first expires or None) on every scrape."""

        async def refresh() -> None:
            pending, next_expiry_s = await read()
            self.approvals_pending.set(pending)
            self.approval_next_expiry.set(math.inf if next_expiry_s is None else next_expiry_s)

        self._refreshers.append(refresh)

    def track_guards(self, read: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
        """Refresh the pause and the breakers from ``read()`` (``Guards.status``: ``paused``
        and ``breakers`` ``{rule: {"open": bool}}``) on every scrape."""

        seen: set[str] = set()

        async def refresh() -> None:
            status = await read()
            self.paused.set(1 if status.get("paused") else 0)
            breakers = status.get("breakers") or {}
            # A breaker whose keys expired is no longer listed: closed, its series goes to 0
            # rather than staying at its last value.
            for rule in seen | set(breakers):
                is_open = bool((breakers.get(rule) or {}).get("open"))
                self._child(self.breaker_open, rule).set(1 if is_open else 0)
            seen.update(breakers)

        self._refreshers.append(refresh)

    def track_components(
        self, checks: Sequence[tuple[str, Callable[[], Awaitable[Any]]]], timeout_s: float
    ) -> None:
        """Run each readiness check (name, check) on every scrape, within ``timeout_s``:
        ``remediator_component_up`` is 1 when it answers, 0 when it raises or times out."""

        async def refresh() -> None:
            async def one(name: str, check: Callable[[], Awaitable[Any]]) -> None:
                try:
                    await answer_within(check(), timeout_s)
                except Exception:
                    self._child(self.component_up, name).set(0)
                else:
                    self._child(self.component_up, name).set(1)

            await asyncio.gather(*(one(name, check) for name, check in checks))

        self._refreshers.append(refresh)

    async def refresh(self) -> None:
        """Run the scrape-time refreshers, together; a failing one leaves its gauge at the last
        value. Together, so a scrape takes the longest one's time: one after another, three
        store reads bounded at 5 s each and the readiness checks made a scrape on a frozen
        store take 17 s, past Prometheus's default 10 s scrape timeout, and the whole scrape
        failed in the outage it should report."""

        async def one(refresher: Callable[[], Awaitable[None]]) -> None:
            # A scrape must not fail because the store is down.
            with contextlib.suppress(Exception):
                await refresher()

        await asyncio.gather(*(one(r) for r in self._refreshers))

    def track_worker_processes(
        self, configured: int, read: Callable[[], Awaitable[Sequence[Reading]]], log: Any
    ) -> None:
        """At each scrape, read the other worker processes' expositions (``read``) and add
        their counters and histograms into ``render``'s (``receiver.metrics_merge``): one that
        does not answer, or answers what does not parse (logged), counts with what it said
        last, and a process started again adds to what its predecessor said last
        (``KeptCounts``), so that no sum steps back. ``configured``: worker.processes."""
        self.worker_processes.labels("configured").set(configured)
        self.worker_processes.labels("answering").set(1)
        kept = KeptCounts()

        async def refresh() -> None:
            answered, problems = kept.update(await read())
            for problem in problems:
                log.warning("a worker process's metrics not readable", problem=problem)
            self._others = kept.families()
            self.worker_processes.labels("answering").set(1 + answered)

        self._refreshers.append(refresh)

    def render(self) -> tuple[bytes, str]:
        """The exposition: this registry's, with the other worker processes' counts added."""
        if not self._others:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        return merged(self.registry, self._others), CONTENT_TYPE_LATEST
