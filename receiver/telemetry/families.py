"""What the service exports: every metric's name, help, labels and buckets, in a registry of
the ``Metrics`` object's own (``receiver.telemetry.metrics`` feeds them)."""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from receiver.priority import BUSY_AT, HOLD_S

__all__ = ["Families"]


class Families:
    """Every metric family the service exports, declared in ``registry`` (a new one by
    default); ``Metrics`` adds how they are fed."""

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
            "Verifications ended, by rule and result (verified, resolved_before_action,"
            " not_resolved, recurred).",
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
        self.intake_holds = Counter(
            "remediator_intake_holds",
            f"Holds of the worker taken by intake in a flood of webhooks ({BUSY_AT} or more"
            " notifications in intake at once), so that the webhooks are answered first: while"
            " one stands, the worker's events wait at their next call to the store or the guards"
            " (an express event and work apart from the flood go on), each for the hold's"
            f" {HOLD_S} s (more when a busy event loop runs its end late). Counted as each hold"
            " is taken.",
            registry=r,
        )
        self.intake_hold_seconds = Counter(
            "remediator_intake_hold_seconds",
            "Seconds intake's holds of the worker lasted (remediator_intake_holds_total), counted"
            f" as each hold ends: {HOLD_S} s each, more when a busy event loop ran its end late.",
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
        # labels() validates and locks on every call, a visible cost per webhook; the label sets
        # here are few and fixed (routes, statuses, rules), so each child is looked up once.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric``'s child for the label ``values``, looked up once."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child
