"""How the metrics are fed: the helpers the service calls as things happen, the refreshers run
at each scrape (``track_*``, ``refresh``), and the exposition (``render``), with the other
worker processes' counts added. The families themselves are declared in ``families.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from receiver.deadlines import answer_within
from receiver.metrics_merge import KeptCounts, Reading, merged
from receiver.single_flight import SingleFlight
from receiver.telemetry.families import Families

__all__ = ["Metrics"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class Metrics(Families):
    """Every metric the service exports, in a registry of its own (``registry``, a new one by
    default), and the ways to feed them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        # The other worker processes' counters and histograms, as read at the last scrape.
        self._others: list[list[Metric]] = []
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        # One refresh at a time, shared by the scrapes that come meanwhile: /metrics is open,
        # and each refresh reads the store, the guards and every readiness check.
        self._refresh_once = SingleFlight(self._refresh_all)
        # Both HTTP children per (route, method, code), looked up once (``http_request``).
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

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

    def intake_hold_taken(self) -> None:
        """Intake took a hold of the worker in a flood (``receiver.priority.IntakeFirst``)."""
        self.intake_holds.inc()

    def intake_hold_ended(self, seconds: float) -> None:
        """A hold of the worker by intake ended after ``seconds``."""
        self.intake_hold_seconds.inc(max(0.0, seconds))

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
        failed in the outage it should report. A scrape that comes while a refresh is on its
        way waits for that one (``SingleFlight``) instead of starting another."""
        await self._refresh_once()

    async def _refresh_all(self) -> None:
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
