"""Wires the stages into one running service: store, guards, rules, worker, HTTP.

Every dependency is built here and passed down; nothing below reaches for a global. The same
code path serves the embedded default (PostgreSQL and Redis from wheels, dry-run without a
cluster) and production (external URLs, real credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from receiver.assembly import Endpoints, assemble, load_rules
from receiver.audit_outbox import AuditedSwitch
from receiver.config import Settings
from receiver.config.checks import start_up_notices
from receiver.embedded import EmbeddedServices
from receiver.http.app import create_app, create_runner
from receiver.http.approvals import ApprovalWeb
from receiver.http.deps import REVIEW_TIMEOUT_S, STORE_TIMEOUT_S, HealthChecks
from receiver.http.login import ReviewWeb
from receiver.intake import Intake
from receiver.priority import IntakeFirst, Priority
from receiver.processes.supervisor import WorkerProcesses
from receiver.review.loader import Review
from receiver.review.sessions import Sessions
from receiver.rules.errors import RuleError
from receiver.rules.loader import RuleWatcher
from receiver.single_flight import SingleFlight
from receiver.startup import (
    Generated,
    RuleReloads,
    StartupError,
    banner,
    configuration_record,
    embedded_credentials,
    matching_sample,
    mode_text,
    require_authentication,
    storage_text,
)
from receiver.stop_budget import AUDIT_TIMEOUT_S, close_all, stop_side_by_side, within
from receiver.store import Store, StoreUnavailable, keep_pruning, keep_statistics
from receiver.telemetry import Metrics

RULES_POLL_S = 5.0


@dataclass(frozen=True, slots=True)
class Backing:
    """Where the stores are; ``embedded`` is set when this process runs servers of its own."""

    endpoints: Endpoints
    embedded: EmbeddedServices | None


@contextlib.asynccontextmanager
async def backing_services(settings: Settings) -> AsyncIterator[Backing]:
    """External URLs when configured, otherwise embedded servers under the data directory.

    Raises DataDirBusy (an EmbeddedError) when another live process owns that directory."""
    db = settings.database_url.get_secret_value() if settings.database_url else None
    rd = settings.redis_url.get_secret_value() if settings.redis_url else None
    if db and settings.redis_external:
        yield Backing(Endpoints(db, rd), embedded=None)
        return
    embed_redis = not settings.redis_external
    async with EmbeddedServices(
        settings.data_dir, postgres=db is None, redis=embed_redis, command="remediator serve"
    ) as emb:
        yield Backing(
            Endpoints(db or str(emb.database_url), str(emb.redis_url) if embed_redis else rd),
            embedded=emb,
        )


def intake_first(priority: Priority, metrics: Metrics) -> IntakeFirst:
    """Intake's hold of the worker in a flood (``receiver.priority.IntakeFirst``) over
    ``priority``, the worker's, each hold and the seconds it lasted counted in ``metrics``
    (``remediator_intake_holds_total``, ``remediator_intake_hold_seconds_total``)."""
    return IntakeFirst(
        priority, on_hold=metrics.intake_hold_taken, on_hold_ended=metrics.intake_hold_ended
    )


async def run_service(
    settings: Settings, *, ready: asyncio.Event | None = None, config_file: Path | None = None
) -> None:
    log = structlog.get_logger("remediator")
    require_authentication(settings)
    # Valid, yet probably a mistake or a safety turned off: said now, and loud ones in the banner.
    notices = start_up_notices(settings, config_file)
    for notice in notices:
        if notice.loud:
            log.error("configuration removes a safety", problem=notice.message)
        else:
            log.warning("configuration warning", problem=notice.message)
    # Rules first: invalid rules stop the start before any server is touched.
    loaded = load_rules(settings, log)
    rules = loaded.holder

    async with backing_services(settings) as backing:
        embedded = backing.embedded
        generated = Generated()
        if embedded is not None:
            settings, generated = embedded_credentials(settings)
        side = await assemble(settings, backing.endpoints, loaded, log=log)
        store, redis, kube, clients, metrics = (
            side.store,
            side.redis,
            side.kube,
            side.clients,
            side.metrics,
        )
        guards, approvals, pipeline = side.guards, side.approvals, side.pipeline
        worker = side.worker
        # The other worker processes, started once this one is serving (worker.processes).
        processes = WorkerProcesses(
            settings.worker_processes - 1,
            settings,
            backing.endpoints,
            rule_files=lambda: rules.files,  # each starts on the rules in force, as serve runs
            log=log.bind(component="worker-processes"),
        )
        dry_run = settings.dry_run_everywhere
        intake = Intake(
            store,
            timeout_s=settings.intake_timeout_seconds,
            settle=pipeline.settled_at_intake,
            first=intake_first(pipeline.priority, metrics),
        )
        # Each check one at a time, shared by every /readyz and scrape that asks meanwhile:
        # both are open to anyone, and a flood of them used up the guards' Redis connections.
        # Each bounded by the readiness timeout, which each caller's own bound no longer
        # enforces on a shared check (the Kubernetes client's has no limit of its own).
        ready_s = settings.readiness_timeout_seconds
        health = HealthChecks(
            store=SingleFlight(
                _check(functools.partial(store.ping, ready_s), embedded, "PostgreSQL"),
                timeout_s=ready_s,
            ),
            redis=SingleFlight(_check(guards.probe, embedded, "Redis"), timeout_s=ready_s),
            kubernetes=SingleFlight(_kube_check(kube, dry_run), timeout_s=ready_s),
        )
        # What the routes read and write goes through this view: each call answers within the
        # bound, a 503 when the store is down or frozen (receiver.store.bounded).
        routes_store = store.bounded(STORE_TIMEOUT_S)
        metrics.track_queue_depth(routes_store.queue_depth)
        metrics.track_dead_letters(routes_store.dead_counts)
        metrics.track_approvals(routes_store.approval_backlog)
        metrics.track_guards(guards.status)
        metrics.track_components(health.items(), settings.readiness_timeout_seconds)
        metrics.track_worker_processes(
            settings.worker_processes, processes.expositions, log.bind(component="metrics")
        )
        # Its audit records are queued in Redis while the store is away, then drained.
        kill_switch = AuditedSwitch(guards, routes_store, log.bind(component="kill-switch"))
        review = ReviewWeb(
            Review(store.bounded(REVIEW_TIMEOUT_S), gap_s=settings.incident_gap_seconds),
            Sessions(settings.operator_tokens),
            approvals.identities,
        )
        app = create_app(
            settings=settings,
            intake=intake,
            metrics=metrics,
            health=health,
            runs_reader=routes_store,
            queues=routes_store,
            locks=guards,
            log=log.bind(component="http"),
            guards=kill_switch,
            approvals=ApprovalWeb(
                approvals.desk.over(routes_store), approvals.identities, approvals.slack
            ),
            review=review,
        )
        runner = create_runner(app, settings)  # with the header and body timeouts
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        stop = asyncio.Event()

        def begin_stop() -> None:
            # In the signal's own callback, before anything of the stop is awaited (aiohttp's
            # cleanup alone may take its shutdown timeout): from here on nothing is claimed and
            # no run is admitted or begins a step. What is in progress finishes or is handed
            # back (worker.stop, below).
            pipeline.wind_down()
            worker.stop_claiming()
            processes.stop()
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, begin_stop)
        report = RuleReloads(rules, log, store.append_audit, loop, store.open_runs, metrics=metrics)

        def reloaded(errors: list[RuleError]) -> None:
            # This process's reload is the one recorded; the worker processes follow it.
            report(errors)
            loop.call_soon_threadsafe(processes.reload)  # the watcher calls from its thread

        watcher = RuleWatcher(rules, settings.rules_dir, reloaded)
        loop.add_signal_handler(signal.SIGHUP, lambda: reloaded(rules.reload()))
        background = [
            asyncio.create_task(watcher.run(RULES_POLL_S), name="rules-watcher"),
            asyncio.create_task(
                keep_pruning(
                    store, settings.event_retention_seconds, log.bind(component="retention")
                ),
                name="retention",
            ),
            asyncio.create_task(
                keep_statistics(store, log.bind(component="statistics")), name="statistics"
            ),
            asyncio.create_task(kill_switch.keep_draining(metrics=metrics), name="audit-outbox"),
            asyncio.create_task(pipeline.digests.run(), name="refusal-digests"),
        ]
        if embedded is not None:
            background.append(
                asyncio.create_task(
                    embedded.supervise(log.bind(component="embedded")), name="embedded-supervisor"
                )
            )
        try:
            if not stop.is_set():  # a signal before this point: claim nothing at all
                await worker.start()
                processes.start()
            try:
                await site.start()
            except OSError as exc:  # the port taken, the host no address of this machine
                raise StartupError(
                    f"cannot listen on {settings.listen_address()}: "
                    f"{exc.strerror or exc}; change http.host (REMEDIATOR_HOST, serve --host) "
                    "or http.port (REMEDIATOR_PORT, serve --port)"
                ) from None
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            url = settings.listen_url(port)
            if embedded is not None:
                # The CLI sends this directory's operator token to this address and no other.
                embedded.announce(settings.local_url(port))
            # Before the banner: once it is printed, the record of how it started is there.
            await _audit(
                store,
                log,
                "service.started",
                configuration_record(
                    settings,
                    rules,
                    dry_run=dry_run,
                    live=clients.clients.names(),
                    embedded=embedded is not None,
                    worker=worker.owner,
                ),
            )
            text = banner(
                settings,
                url,
                dry_run=dry_run,
                live=clients.clients.names(),
                embedded=embedded is not None,
                shown=generated,
                sample=matching_sample(rules.current),
                warnings=[n.message for n in notices if n.loud],
            )
            print(text, file=sys.stderr, flush=True)
            log.info(
                "started",
                url=url,
                mode=mode_text(dry_run, clients.clients.names()),
                dry_run_everywhere=dry_run,  # forced; `dry_run: false` beside a dry-run mode misled
                systems=clients.clients.names(),
                storage=storage_text(settings),
                rules=len(rules.current),
                embedded=embedded is not None,
                worker=worker.owner,
            )
            if ready is not None:
                ready.set()
            await stop.wait()
            log.info("stopping: finishing or releasing claimed work")
        finally:
            # First (the signal handler did it already, an error did not): nothing is claimed
            # or admitted, a step in progress finishes within the grace, and none begins after it.
            pipeline.wind_down()
            worker.stop_claiming()
            for sig in (signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)  # a second ^C hurries the stop (KeyboardInterrupt)
            # Not removed: SIGTERM's default action killed the process in the middle of its stop,
            # and the embedded PostgreSQL and Redis outlived it. Every part of the stop is bounded.
            loop.add_signal_handler(
                signal.SIGTERM, lambda: log.info("stopping already; SIGTERM again ignored")
            )
            for task in background:
                task.cancel()
            # Each part within its bound, whatever it waits on (receiver.stop_budget).
            processes.stop()
            await stop_side_by_side(runner, intake, worker, settings, log, processes)
            await within(report.drain(), AUDIT_TIMEOUT_S, log, "recording the rules' reloads")
            await _audit(store, log, "service.stopped", {"worker": worker.owner}, AUDIT_TIMEOUT_S)
            await close_all(store, redis, clients, kube, log)
            log.info("stopped")


async def _audit(
    store: Store, log: Any, kind: str, data: dict[str, Any], timeout_s: float | None = None
) -> None:
    """A service-level audit row; the store being down is logged, never fatal."""
    try:
        await store.append_audit(kind, data=data, timeout_s=timeout_s)
    except StoreUnavailable as exc:
        log.error("could not record in the audit log", kind=kind, error=str(exc))


class EmbeddedServerDown(RuntimeError):
    """An embedded server died and is being restarted (for /readyz)."""


def _check(probe: Any, embedded: EmbeddedServices | None, server: str) -> Any:
    """A readiness check: the embedded ``server``'s restart state first, then ``probe``."""

    async def check() -> str | None:
        problem = embedded.problem(server) if embedded is not None else None
        if problem is not None:
            raise EmbeddedServerDown(problem)
        await probe()
        return None

    return check


def _kube_check(kube: Any | None, dry_run: bool) -> Any:
    async def check() -> str | None:
        if kube is None:
            return "dry-run (no credentials)"
        from kubernetes_asyncio import client

        await client.VersionApi(kube).get_code()
        return "dry-run" if dry_run else None

    return check
