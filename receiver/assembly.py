"""The worker's side of the service, built in one place: the store, the guards' Redis, the
action clients, the approvals, the pipeline and the worker that feeds it.

``remediator serve`` builds it once in its own process (``receiver.service``, which adds the
HTTP server on top) and once in each worker process it starts (``receiver.processes.child``,
``worker.processes``): both run the same worker over the same stores, as replicas do, so what
one process claims no other can (the store's leases and fences), and what the guards admit is
admitted once across them (the guards' Redis scripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from receiver.approvals.policy import rules_not_loaded
from receiver.approvals.setup import ApprovalSetup, approval_setup
from receiver.clients import ServiceClients, build_clients, check_required, required_clients
from receiver.config import ConfigError, Settings, kube_credentials_present, named
from receiver.config.action_waits import pipeline_waits
from receiver.config.approvals import ApprovalFiles, load_approvals
from receiver.dsn_errors import not_a_dsn, refused, where
from receiver.guards.redis_guards import Guards
from receiver.kube_credentials import check_kubeconfig_named, load_kube_configuration
from receiver.pipeline import Pipeline, PipelineSettings
from receiver.redis_connect import GuardRedis, connect_redis, mode_mismatch, write_refusal
from receiver.redis_warnings import durability_warning, eviction_warning
from receiver.reloads import log_rule_warnings
from receiver.rules.loader import RuleHolder
from receiver.rules.model import RuleSet
from receiver.startup import StartupError, connect_store
from receiver.store import ClashReport, Store, describe, is_unavailable
from receiver.telemetry import Metrics
from receiver.worker import Worker
from remediations.base import Registry
from remediations.registry import default_registry

__all__ = [
    "Endpoints",
    "Rules",
    "WorkerSide",
    "assemble",
    "check_direct_url",
    "kube_client",
    "listen_dsn",
    "load_rules",
]


# How long serve's start waits for database.direct_url to take a connection (seconds): the
# worker's LISTEN connects with the same bound (receiver.worker.listen).
_DIRECT_CONNECT_S = 5.0

# How long a refused start waits for the store's pool to close (seconds), then terminates it:
# the connections were just opened and are idle, so the wait is a round trip each.
_CLOSE_ON_REFUSAL_S = 5.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the stores are: PostgreSQL's DSN and the guards' Redis URL (None with Sentinel:
    the sentinels name the master, ``receiver.redis_connect``). Picklable: a worker process
    gets the endpoints of the process that started it (the embedded servers' included)."""

    database_url: str
    redis_url: str | None


async def redis_checks(
    redis: GuardRedis,
    guards: Guards,
    settings: Settings,
    url: str | None,
    *,
    describe: bool,
) -> tuple[str | None, str | None, str | None, str | None]:
    """The start-up checks of the guards' Redis, as (mode mismatch, durability warning,
    eviction warning, write refusal): each what to fix, or None (``receiver.redis_connect``,
    ``receiver.redis_warnings``). Without ``describe`` (a worker process: serve made them) only
    the mode check, whose mismatch stops a start.

    Made at once, not one after the other: a Redis that hangs (connections open, no answer)
    holds the start for the longest of their bounds, the mode check's 5 s socket timeout,
    instead of their sum (7 s with the write check's default 2 s, ``http.readiness_timeout``;
    12 s behind Sentinel or on a cluster, where the durability check waits 5 s too). A check
    that raises (none is meant to) raises here once the others are done, so none is left
    running."""
    if not describe:
        return await mode_mismatch(redis, settings, url), None, None, None
    mismatch, durability, eviction, refusal = await asyncio.gather(
        mode_mismatch(redis, settings, url),
        durability_warning(redis, guards.keys.pause()),
        eviction_warning(redis, guards.keys.pause()),
        write_refusal(redis, guards.probe, settings.readiness_timeout_seconds),
        return_exceptions=True,
    )
    return _said(mismatch), _said(durability), _said(eviction), _said(refusal)


def _said(outcome: str | BaseException | None) -> str | None:
    """A check's finding, or what it raised raised again."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def listen_dsn(settings: Settings, endpoints: Endpoints) -> str:
    """Where the worker LISTENs: ``database.direct_url`` when set (a direct connection, needed
    behind a transaction pooler), else the store's own database."""
    if settings.database_direct_url is not None:
        return settings.database_direct_url.get_secret_value()
    return endpoints.database_url


async def check_direct_url(settings: Settings, log: Any) -> None:
    """``database.direct_url``, when set, takes a connection. The worker LISTENs there for new
    work, and a URL PostgreSQL refuses (a password, a database or role that does not exist,
    pg_hba.conf) never will: unchecked, ``serve`` ran with its LISTEN failing for good, a
    traceback every few seconds that named no setting, new work found only by polling.

    Raises StartupError naming the setting for what PostgreSQL refused, ConfigError for a URL
    asyncpg cannot read. One out of reach now, or in a passing state (too many connections,
    starting up), is warned of: the worker keeps trying it and polls meanwhile."""
    if settings.database_direct_url is None:
        return
    dsn = settings.database_direct_url.get_secret_value()
    source = named("database_direct_url")
    try:
        conn = await asyncpg.connect(dsn, timeout=_DIRECT_CONNECT_S)
    except (ValueError, asyncpg.exceptions.ClientConfigurationError) as exc:
        raise not_a_dsn(source, dsn, exc) from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if not is_unavailable(exc):
            raise StartupError(
                f"{refused(source, dsn, exc)} (the worker LISTENs there for new work)"
            ) from None
        log.warning(
            f"{source} cannot be reached now; the worker LISTENs there for new work and finds"
            " it by polling, every worker.poll_interval, until it can",
            at=where(dsn),
            error=describe(exc),
        )
        return
    await conn.close()


async def kube_client(settings: Settings) -> Any | None:
    """A kubernetes_asyncio ApiClient from a kubeconfig or in-cluster credentials, or None."""
    # A kubeconfig set that names no file is refused, not taken for "no cluster" (dry-run).
    check_kubeconfig_named(settings, os.environ)
    if not kube_credentials_present(settings, os.environ):
        return None
    from kubernetes_asyncio import client

    # ConfigError naming the setting for a kubeconfig that cannot be loaded (was a traceback).
    configuration = await load_kube_configuration(settings, os.environ)
    return client.ApiClient(configuration)


@dataclass(frozen=True, slots=True)
class Rules:
    """The rules in force and what they were checked against: the actions' registry and the
    approval files (a ``by_rule`` key naming no rule is refused, at the start and at a reload)."""

    registry: Registry
    holder: RuleHolder
    approval_files: ApprovalFiles


def load_rules(
    settings: Settings, log: Any, *, warn: bool = True, files: Mapping[str, str] | None = None
) -> Rules:
    """Load the rule files and the approval files of ``settings``, checked together. The
    rules' warnings are logged when ``warn`` (a worker process leaves them to the process that
    started it, which logged them already). ``files``: the rule files' texts by path, compiled
    instead of the rules directory's (a worker process starts on the rules ``serve`` runs on);
    a reload reads the directory either way.

    Raises RuleSetError for invalid rules, ConfigError for an unreadable approval file or one
    naming a rule not loaded."""
    registry = default_registry()
    # A step naming a channel not configured is an error, as an unknown action is (none
    # configured: one warning).
    channels = frozenset(settings.notify_channels)
    holder = RuleHolder(
        settings.rules_dir, registry, settings.namespace_policy(), channels=channels, files=files
    )
    if warn:
        log_rule_warnings(log, holder.current.warnings)
    # Approval files too: a missing key or approvers file must stop the start early.
    approval_files = load_approvals(settings)
    approver_problems = functools.partial(_by_rule_problems, approval_files.approvers.by_rule)
    if problems := approver_problems(holder.current):
        raise ConfigError("; ".join(problems))
    holder.check = approver_problems  # a reload that orphans a by_rule key is a failed one
    return Rules(registry, holder, approval_files)


def _by_rule_problems(by_rule: Iterable[str], rules: RuleSet) -> list[str]:
    return rules_not_loaded(by_rule, (rule.name for rule in rules.rules))


@dataclass(frozen=True, slots=True)
class WorkerSide:
    """What ``assemble`` built; ``kube`` is None without cluster credentials."""

    store: Store
    redis: GuardRedis
    kube: Any | None
    clients: ServiceClients
    metrics: Metrics
    guards: Guards
    approvals: ApprovalSetup
    pipeline: Pipeline
    worker: Worker


async def assemble(
    settings: Settings,
    endpoints: Endpoints,
    rules: Rules,
    *,
    log: Any,
    started_by_serve: bool = False,
) -> WorkerSide:
    """Connect the store (migrated) and the guards' Redis at ``endpoints``, open the clients the
    loaded ``rules`` need and check them, and build the pipeline and its worker (not started).
    ``started_by_serve``: in a worker process, which leaves the clients' check and the lines
    that describe the set-up (where the guards' Redis is, its durability, whether it takes
    writes, what of approvals is off) to ``serve``: it did both before it started the process,
    on the same settings, and N processes saying them again would only repeat them.

    ``rules``: from ``load_rules``. Raises StartupError or ConfigError (the store unreachable,
    Redis of another mode than ``redis.mode``, a client the rules need that does not answer)."""
    store = await connect_store(settings, endpoints.database_url, check_pooler=not started_by_serve)
    # A start refused from here on (Redis of another mode, a client the rules need that does not
    # answer) closes what it opened, the store last. Left open, the pool's upkeep reconnected to
    # a PostgreSQL stopping with the process (the embedded one) and logged each failure with its
    # traceback after the refusal's own message.
    async with contextlib.AsyncExitStack() as opened:
        opened.push_async_callback(store.close, _CLOSE_ON_REFUSAL_S)
        store.late_delivery_window_s = settings.late_delivery_window_seconds
        if not started_by_serve:
            await check_direct_url(settings, log)
        redis = connect_redis(settings, endpoints.redis_url)
        opened.push_async_callback(redis.close)
        if not started_by_serve:
            log.info("guards' redis", mode=settings.redis_mode.value, at=redis.where)
        policy = settings.namespace_policy()
        guards = Guards(redis.client, policy, settings.guard_settings())
        mismatch, durability, eviction, refusal = await redis_checks(
            redis, guards, settings, endpoints.redis_url, describe=not started_by_serve
        )
        if mismatch is not None:
            raise ConfigError(mismatch)
        kube = await kube_client(settings)
        if kube is not None:
            opened.push_async_callback(kube.close)
        # Clients by name for every configured connection; only those the loaded rules need are
        # opened now (and checked), the others when a step first uses them.
        clients = build_clients(settings, kube=kube)
        opened.push_async_callback(clients.close)
        if not started_by_serve:
            await check_required(
                clients, required_clients(rules.holder.current, rules.registry), log
            )
        metrics = Metrics()
        store.label_clashes = ClashReport(metrics.label_clashes)
        if durability is not None:
            log.warning("guard state may be lost in a redis failover", problem=durability)
        if eviction is not None:
            # Deleted guard keys read as no lock, no pause, no budget spent: fail open.
            log.warning("guard state may be evicted by redis", problem=eviction)
        if refusal is not None:
            # Said once here: otherwise only failing admissions and /readyz would tell that the
            # URL names a replica. Not fatal: a failover ends it, and the guards fail closed.
            log.warning("guards' redis does not take writes", problem=refusal)
        approvals = approval_setup(
            settings,
            rules.approval_files,
            store,
            log=log.bind(component="approvals"),
            notifier=clients.notifier,
            metrics=metrics,
            warn=not started_by_serve,
        )
        pipeline = Pipeline(
            store=store,
            guards=guards,
            rules=rules.holder,
            registry=rules.registry,
            clients=clients.clients,
            settings=PipelineSettings(
                dry_run=settings.dry_run_everywhere, policy=policy, **pipeline_waits(settings)
            ),
            metrics=metrics,
            approvals=approvals.desk,
            log=structlog.get_logger("remediator.pipeline").bind(),
        )
        worker = Worker(
            store,
            pipeline,
            concurrency=settings.worker_concurrency,
            lease_s=settings.worker_lease_seconds,
            poll_interval_s=settings.worker_poll_interval_seconds,
            max_attempts=settings.worker_max_attempts,
            process_job=pipeline.run_job,
            lease_to_process=True,
            priority=pipeline.priority,
            listen_dsn=listen_dsn(settings, endpoints),
            log=log.bind(component="worker"),
        )
        side = WorkerSide(store, redis, kube, clients, metrics, guards, approvals, pipeline, worker)
        opened.pop_all()
    return side
