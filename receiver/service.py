"""Wires the stages into one running service: store, guards, rules, worker, HTTP.

Every dependency is built here and passed down; nothing below reaches for a global. The same
code path serves the embedded default (PostgreSQL and Redis from wheels, dry-run without a
cluster) and production (external URLs, real credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from pydantic import SecretStr

from receiver.config import ConfigError, Settings, kube_credentials_present
from receiver.embedded import EmbeddedServices
from receiver.embedded.credentials import (
    LOCAL_OPERATOR,
    OPERATOR_TOKEN_FILE,
    WEBHOOK_TOKEN_FILE,
    secret_file,
)
from receiver.guards.redis_guards import Guards
from receiver.http.app import create_app
from receiver.http.deps import HealthChecks
from receiver.intake import Intake
from receiver.pipeline import Pipeline, PipelineSettings
from receiver.rules.errors import RuleError
from receiver.rules.loader import RuleHolder, RuleWatcher
from receiver.store import Store
from receiver.telemetry import Metrics
from receiver.worker import Worker
from remediations.base import Clients
from remediations.registry import default_registry

SHUTDOWN_GRACE_S = 20.0
RULES_POLL_S = 5.0
PRUNE_EVERY_S = 3600.0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the same asyncio API with less CPU per request, which is what
    bounds intake on a small machine. The standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the stores are; ``embedded`` is set when this process runs servers of its own."""

    database_url: str
    redis_url: str
    embedded: EmbeddedServices | None


@contextlib.asynccontextmanager
async def backing_services(settings: Settings) -> AsyncIterator[Endpoints]:
    """External URLs when configured, otherwise embedded servers under the data directory.

    Raises DataDirBusy (an EmbeddedError) when another live process owns that directory."""
    db = settings.database_url.get_secret_value() if settings.database_url else None
    rd = settings.redis_url.get_secret_value() if settings.redis_url else None
    if db and rd:
        yield Endpoints(db, rd, embedded=None)
        return
    async with EmbeddedServices(
        settings.data_dir, postgres=db is None, redis=rd is None, command="remediator serve"
    ) as emb:
        yield Endpoints(db or str(emb.database_url), rd or str(emb.redis_url), embedded=emb)


async def kube_client(settings: Settings) -> Any | None:
    """A kubernetes_asyncio ApiClient from a kubeconfig or in-cluster credentials, or None."""
    if not kube_credentials_present(settings, os.environ):
        return None
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    if settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        path = settings.kubeconfig or Path(os.environ.get("KUBECONFIG", "~/.kube/config"))
        await config.load_kube_config(
            config_file=str(path.expanduser()), client_configuration=configuration
        )
    return client.ApiClient(configuration)


@dataclass(frozen=True, slots=True)
class Generated:
    """Which credentials the embedded default generated (only those may be printed)."""

    webhook: bool = False
    operator: bool = False


def embedded_credentials(settings: Settings) -> tuple[Settings, Generated]:
    """The embedded default still authenticates, with nothing to configure: a webhook token
    (unless webhook auth is configured) and the token of the operator ``local`` (unless
    operators are configured), random, kept in the data directory (mode 0600) across restarts.

    Returns the settings that use them, and which were generated. Raises EmbeddedError when a
    kept token is unreadable or open to other users."""
    update: dict[str, Any] = {}
    generated = Generated(
        webhook=not settings.auth_configured, operator=settings.operator_tokens_dir is None
    )
    if generated.webhook:
        token = secret_file(settings.data_dir / WEBHOOK_TOKEN_FILE)
        update["webhook_token"] = SecretStr(token)
    if generated.operator:
        token = secret_file(settings.data_dir / OPERATOR_TOKEN_FILE)
        update["operator_tokens"] = {LOCAL_OPERATOR: SecretStr(token)}
    return settings.model_copy(update=update), generated


def require_authentication(settings: Settings) -> None:
    """Fail closed: webhooks trigger changes, so an open receiver must be asked for.

    The embedded default is covered (it generates a token); with external servers the
    operator sets a token or basic auth, or says REMEDIATOR_ALLOW_UNAUTHENTICATED=true.
    """
    external = settings.database_url is not None and settings.redis_url is not None
    if external and not settings.auth_configured and not settings.allow_unauthenticated:
        raise ConfigError(
            "REMEDIATOR_WEBHOOK_TOKEN_FILE: no webhook authentication is configured; set a "
            "bearer token (REMEDIATOR_WEBHOOK_TOKEN_FILE) or basic auth "
            "(REMEDIATOR_WEBHOOK_USERNAME and REMEDIATOR_WEBHOOK_PASSWORD_FILE), or "
            "REMEDIATOR_ALLOW_UNAUTHENTICATED=true on a network you trust"
        )


def banner(settings: Settings, url: str, *, dry_run: bool, embedded: bool, shown: Generated) -> str:
    """What `make run` prints: where it listens, how it runs, and commands that work.

    Only generated tokens (``shown``) appear; a configured secret is never printed, the hints
    name a variable instead."""
    sample = Path(__file__).parent / "samples" / "high-memory.json"
    webhook = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
    if webhook and shown.webhook:
        auth = f"-H 'Authorization: Bearer {webhook}' "
    elif settings.webhook_token is not None:
        auth = '-H "Authorization: Bearer $WEBHOOK_TOKEN" '
    elif settings.basic_auth_configured:
        auth = f"-u '{settings.webhook_username}:PASSWORD' "
    else:
        auth = ""
    operator = settings.operator_tokens.get(LOCAL_OPERATOR) if shown.operator else None
    if operator is not None:
        operator_auth = f"-H 'Authorization: Bearer {operator.get_secret_value()}' "
    elif settings.operator_tokens or settings.auth_configured:
        operator_auth = '-H "Authorization: Bearer $OPERATOR_TOKEN" '
    else:
        operator_auth = ""
    mode = "dry-run (nothing is changed)" if dry_run else "LIVE (actions change the cluster)"
    storage = f"embedded PostgreSQL and Redis under {settings.data_dir}" if embedded else "external"
    lines = [
        "",
        f"alert-remediator is listening on {url}",
        f"  mode:       {mode}",
        f"  storage:    {storage}",
        f"  rules:      {settings.rules_dir}",
    ]
    if webhook and shown.webhook:
        kept = settings.data_dir / WEBHOOK_TOKEN_FILE
        lines.append(f"  webhook token:  {webhook}  (in {kept}; posts alerts, nothing else)")
    elif settings.auth_configured:
        lines.append("  webhook auth: as configured (the secret is not printed)")
    else:
        lines.append("  webhook auth: NONE (set REMEDIATOR_WEBHOOK_TOKEN_FILE)")
    if operator is not None:
        kept = settings.data_dir / OPERATOR_TOKEN_FILE
        lines.append(
            f"  operator token: {operator.get_secret_value()}  (in {kept}; operator"
            f" {LOCAL_OPERATOR!r}: runs, status, pause, resume)"
        )
    elif settings.operator_tokens:
        names = ", ".join(sorted(settings.operator_tokens))
        lines.append(f"  operators:  {names} (tokens from {settings.operator_tokens_dir})")
    elif settings.auth_configured:
        lines.append("  operators:  NONE: runs, status and pause are refused to everyone")
    lines += [
        "  post a sample alert:",
        f"    curl -sS {auth}-H 'Content-Type: application/json' "
        f"--data @{sample} {url}/api/v1/alerts",
        f"  then list the runs:  {_cli_command()} runs"
        f"   (or curl -sS {operator_auth}{url}/api/v1/runs)",
        "",
    ]
    return "\n".join(lines)


def _cli_command() -> str:
    """How to run the CLI from here: ``.venv/bin/remediator`` after `make run`, which does not
    put the virtualenv on PATH; plain ``remediator`` otherwise."""
    invoked = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if invoked is None or invoked.name != "remediator":
        return "remediator"
    try:
        return str(invoked.absolute().relative_to(Path.cwd()))
    except ValueError:
        return "remediator"


async def run_service(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    log = structlog.get_logger("remediator")
    require_authentication(settings)
    registry = default_registry()
    policy = settings.namespace_policy()
    # Rules first: invalid rules must stop the start before any server is touched.
    rules = RuleHolder(settings.rules_dir, registry, policy)

    async with backing_services(settings) as endpoints:
        embedded = endpoints.embedded
        generated = Generated()
        if embedded is not None:
            settings, generated = embedded_credentials(settings)
        store = await Store.connect(endpoints.database_url)
        redis = aioredis.from_url(endpoints.redis_url, socket_timeout=5, socket_connect_timeout=5)
        kube = await kube_client(settings)
        dry_run = settings.effective_dry_run(kube is not None)
        metrics = Metrics()
        guards = Guards(redis, policy, settings.guard_settings())
        pipeline = Pipeline(
            store=store,
            guards=guards,
            rules=rules,
            registry=registry,
            clients=Clients({"kubernetes": kube} if kube is not None else {}),
            settings=PipelineSettings(dry_run=dry_run, policy=policy),
            metrics=metrics,
        )
        worker = Worker(
            store,
            pipeline,
            concurrency=settings.worker_concurrency,
            lease_s=settings.worker_lease_seconds,
            poll_interval_s=settings.worker_poll_interval_seconds,
            process_job=pipeline.run_job,
            listen_dsn=endpoints.database_url,
            log=log.bind(component="worker"),
        )
        intake = Intake(store, settle=pipeline.settled_at_intake)
        metrics.track_queue_depth(store.queue_depth)
        health = HealthChecks(
            store=_check(store.ping, embedded, "PostgreSQL"),
            redis=_check(guards.ping, embedded, "Redis"),
            kubernetes=_kube_check(kube, dry_run),
        )
        app = create_app(
            settings=settings,
            intake=intake,
            metrics=metrics,
            health=health,
            runs_reader=store,
            log=log.bind(component="http"),
            guards=guards,
            audit=store.append_audit,
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        report = _reload_reporter(rules, log)
        watcher = RuleWatcher(rules, settings.rules_dir, report)
        loop.add_signal_handler(signal.SIGHUP, lambda: report(rules.reload()))
        background = [
            asyncio.create_task(watcher.run(RULES_POLL_S), name="rules-watcher"),
            asyncio.create_task(
                _prune(store, settings.event_retention_seconds, log), name="retention"
            ),
        ]
        if embedded is not None:
            background.append(
                asyncio.create_task(
                    embedded.supervise(log.bind(component="embedded")), name="embedded-supervisor"
                )
            )
        try:
            await worker.start()
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            url = f"http://{settings.host}:{port}"
            if embedded is not None:
                # The CLI sends this directory's operator token to this address and no other.
                embedded.announce(settings.local_url(port))
            text = banner(
                settings, url, dry_run=dry_run, embedded=embedded is not None, shown=generated
            )
            print(text, file=sys.stderr, flush=True)
            log.info(
                "started",
                url=url,
                dry_run=dry_run,
                rules=len(rules.current),
                embedded=embedded is not None,
                worker=worker.owner,
            )
            if ready is not None:
                ready.set()
            await stop.wait()
            log.info("stopping: finishing or releasing claimed work")
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for task in background:
                task.cancel()
            await runner.cleanup()  # stop taking webhooks first
            await intake.drain()
            await worker.stop(SHUTDOWN_GRACE_S)
            await store.close()
            await redis.aclose()
            if kube is not None:
                await kube.close()
            log.info("stopped")


async def _prune(store: Store, retention_s: float, log: Any) -> None:
    """Retention: processed events older than the setting go; runs and audit rows stay."""
    while True:
        try:
            pruned = await store.prune_events(retention_s)
            if pruned:
                log.info("pruned old alert events", count=pruned)
        except Exception as exc:  # the store may be down for a while; try again next time
            log.warning("pruning alert events failed", error=str(exc))
        await asyncio.sleep(PRUNE_EVERY_S)


def _reload_reporter(rules: RuleHolder, log: Any) -> Any:
    def report(errors: list[RuleError]) -> None:
        if errors:
            for error in errors:
                log.error("rule reload failed; keeping the last good rules", error=str(error))
        else:
            log.info("rules reloaded", rules=len(rules.current), digest=rules.current.digest)

    return report


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
