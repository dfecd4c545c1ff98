"""Clients by name: what the service builds from configuration for the actions of its rules.

Every configured connection gets a client under its ``Clients`` key (``postgres:<name>``,
``redis:<name>``, ``http``, ``notify``; ``kubernetes`` is built by the service), and none of
them connects by being built: a PostgreSQL pool opens on first use, a Redis client connects on
its first command. At start-up the service checks, and so opens, exactly the connections that
some loaded rule's step requires (``required_clients``), and logs what is required but not
configured: such a step records ``dry_run`` saying which client is missing (the pipeline does
that). A connection no loaded rule needs stays closed until a reloaded rule uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from receiver.config import ConfigError, Settings
from receiver.config.redact import unreadable
from receiver.rules.model import Rule, RuleSet
from remediations.base import Clients, Registry
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, Notifier
from remediations.postgres.connection import PostgresConnection
from remediations.redis_queue.queues import RedisQueues
from remediations.retrying import RetryPolicy
from remediations.targets import Target
from remediations.tls import TlsTrust, ca_context

__all__ = ["Required", "ServiceClients", "build_clients", "required_clients"]

# Two stand-ins for a templated target name: a client name that differs between them depends
# on the alert's labels, so the rule may need any connection of that system.
_PROBES = ("probe_a", "probe_b")


@dataclass(frozen=True, slots=True)
class Required:
    """What the loaded rules' steps need: client names known from the rule alone (``names``),
    systems where the connection depends on the alert's labels (``any_of``: ``"postgres"``
    means any configured PostgreSQL database), and notification channels by name. ``by``
    maps each name to the rules and actions that need it, for messages."""

    names: frozenset[str] = frozenset()
    any_of: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def wants(self, name: str) -> bool:
        """Whether a step of some loaded rule may need the client called ``name``."""
        return name in self.names or name.partition(":")[0] in self.any_of


def _probe_target(rule: Rule, value: str) -> Target:
    values = {name: value for _root, name in rule.target_name.references}
    values |= {name: value for _root, name in rule.target_namespace.references}
    return Target(
        rule.target_kind,
        rule.target_namespace.render(values, values),
        rule.target_name.render(values, values),
    )


def required_clients(rules: RuleSet, registry: Registry) -> Required:
    """The clients the steps of ``rules`` need, from each action's ``requires(target)``."""
    names: set[str] = set()
    any_of: set[str] = set()
    channels: set[str] = set()
    by: dict[str, list[str]] = {}
    for rule in rules.rules:
        first, second = (_probe_target(rule, p) for p in _PROBES)
        if rule.announce is not None:
            # Its run announcements go out through the notifier too.
            names.add("notify")
            channels.add(rule.announce.channel)
            by.setdefault("notify", []).append(f"{rule.name} (notify: announcements)")
        for step in (*rule.steps, *rule.on_resolved, *rule.on_failed):
            action = registry.get(step.action)
            one, other = action.requires(first), action.requires(second)
            fixed = one & other
            names |= fixed
            for name in one ^ other:
                any_of.add(name.partition(":")[0])
            for name in one | other:
                key = name if name in fixed else f"{name.partition(':')[0]}:*"
                # The two probes pick two connections of one system, both ``postgres:*``; and
                # a rule may use one action twice: the warning named the rule twice.
                needer = f"{rule.name} ({step.action})"
                if needer not in by.setdefault(key, []):
                    by[key].append(needer)
            if step.action == "notify" and isinstance(step.params.get("channel"), str):
                channels.add(step.params["channel"])
    return Required(
        frozenset(names),
        frozenset(any_of),
        frozenset(channels),
        {k: tuple(v) for k, v in by.items()},
    )


@dataclass
class ServiceClients:
    """The clients the service hands to the pipeline, and what closes them."""

    clients: Clients
    notifier: Notifier | None = None
    postgres: dict[str, PostgresConnection] = field(default_factory=dict)
    redis: dict[str, RedisQueues] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close every pool, client and session; safe to call once at shutdown."""
        for conn in self.postgres.values():
            await conn.close()
        for queues in self.redis.values():
            await queues.close()
        if self.session is not None:
            await self.session.close()


def _secret(value: Any) -> str:
    return str(value.get_secret_value()) if value is not None else ""


def _redis_client(setting: str, url: str) -> aioredis.Redis:
    """The client of a Redis connection's URL (read from ``setting``). Raises ConfigError
    naming the setting, never the password, for a URL redis-py cannot take (no scheme, a
    ``?socket_timeout=`` that is no number): it was a traceback that ended ``serve``."""
    try:
        return aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    except ValueError as exc:
        raise ConfigError(f"{setting}: {unreadable('Redis', url, exc)}") from None


def _trust(setting: str, ca_file: Path | None) -> TlsTrust | None:
    """The CA bundle ``ca_file`` (set as ``setting``) loaded, or None (the system's CAs). The
    file was loaded at start (``connections._ca_file``); one changed since is refused as then:
    ValueError naming the file."""
    if ca_file is None:
        return None
    return TlsTrust(setting, ca_file, ca_context(ca_file))


def build_clients(settings: Settings, *, kube: Any | None = None) -> ServiceClients:
    """A client for every configured connection; nothing connects yet. Call inside the event
    loop (the HTTP session binds to it). Raises ConfigError for a Redis URL redis-py cannot
    take, naming its setting."""
    mapping: dict[str, Any] = {}
    if kube is not None:
        mapping["kubernetes"] = kube
    postgres = {
        name: PostgresConnection(
            name,
            _secret(db.dsn),
            statement_timeout_s=db.statement_timeout,
            max_size=db.max_connections,
            policy=RetryPolicy(request_timeout=db.timeout),
        )
        for name, db in settings.postgres_databases.items()
    }
    redis = {
        name: RedisQueues(
            name,
            _redis_client(f"redis.queues.{name}.url_file", _secret(conn.url)),
            {queue: spec.spec() for queue, spec in conn.queues.items()},
        )
        for name, conn in settings.redis_queues.items()
    }
    mapping |= {f"postgres:{name}": conn for name, conn in postgres.items()}
    mapping |= {f"redis:{name}": queues for name, queues in redis.items()}
    session = None
    notifier = None
    if settings.http_endpoints or settings.notify_channels:
        # One session (one connection pool) for endpoints and channels alike.
        session = aiohttp.ClientSession()
    if settings.http_endpoints:
        assert session is not None
        endpoints = {
            name: Endpoint(
                name,
                ep.url if ep.url is not None else _secret(ep.secret_url),
                {**ep.headers, **{h: _secret(v) for h, v in ep.secret_headers.items()}},
                HttpPolicy(
                    timeout=ep.timeout, attempts=ep.attempts, max_retry_after=ep.max_retry_after
                ),
                secrets=tuple(_secret(v) for v in ep.secret_headers.values()),
                tls=_trust(f"http.endpoints.{name}.ca_file", ep.ca_file),
            )
            for name, ep in settings.http_endpoints.items()
        }
        mapping["http"] = HttpEndpoints(endpoints, session)
    if settings.notify_channels:
        assert session is not None
        channels = {
            name: Channel(
                name,
                ch.kind,
                _secret(ch.url),
                HttpPolicy(timeout=ch.timeout, attempts=ch.attempts),
                tls=_trust(f"notify.channels.{name}.ca_file", ch.ca_file),
            )
            for name, ch in settings.notify_channels.items()
        }
        notifier = Notifier(channels, session, external_url=settings.external_url)
        mapping["notify"] = notifier
    return ServiceClients(Clients(mapping), notifier, postgres, redis, session)


async def check_required(built: ServiceClients, required: Required, log: Any) -> None:
    """Open and check the connections the loaded rules need; log what is missing or failing.

    Never raises: a database that is down at start-up is what the remediator may be there to
    help with, and its steps will report the failure when they run.
    """
    for name in sorted(required.names):
        if not built.clients.has(name):
            log.warning(
                "a loaded rule needs a client that is not configured; its steps will record "
                "dry_run",
                client=name,
                needed_by=list(required.by.get(name, ())),
            )
    for system in sorted(required.any_of):
        configured = [n for n in _configured(built) if n.startswith(f"{system}:")]
        if not configured:
            log.warning(
                "loaded rules pick a connection from the alert's labels, and none of that kind "
                "is configured; their steps will record dry_run",
                system=system,
                needed_by=list(required.by.get(f"{system}:*", ())),
            )
    if built.notifier is not None:
        for channel in sorted(required.channels - set(built.notifier.channels)):
            log.warning(
                "a rule's notify step or announcements name a channel that is not configured",
                channel=channel,
            )
    checks = [
        _check(f"postgres:{name}", conn.check(), log)
        for name, conn in built.postgres.items()
        if required.wants(f"postgres:{name}")
    ]
    checks += [
        _check(f"redis:{name}", queues.client.ping(), log)
        for name, queues in built.redis.items()
        if required.wants(f"redis:{name}")
    ]
    await asyncio.gather(*checks)


def _configured(built: ServiceClients) -> Iterable[str]:
    return [*(f"postgres:{n}" for n in built.postgres), *(f"redis:{n}" for n in built.redis)]


async def _check(name: str, probe: Any, log: Any) -> None:
    try:
        await probe
    except Exception as exc:  # report and go on: see check_required
        log.warning("a connection the rules need does not answer", client=name, error=str(exc))
    else:
        log.info("connection ready", client=name)
