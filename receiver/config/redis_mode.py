"""How the guards reach Redis: one server, the master a Sentinel names, or a Redis Cluster.

``redis.mode``:

- ``standalone`` (the default): ``redis_url`` names the server; without it the service starts
  the embedded one.
- ``sentinel``: ``redis.sentinel.addresses`` (``host:port``, port 26379 by default) and
  ``redis.sentinel.master`` (the name the sentinels monitor, ``sentinel monitor <name> ...``);
  the service asks them for the master before each new connection and follows a failover.
  ``redis_url`` is not used (it names one server): the master's password is
  ``redis.password`` (or ``redis.password_file``), the sentinels' own, if they have one
  (``requirepass`` in sentinel.conf), ``redis.sentinel.password`` (or ``_file``).
- ``cluster``: ``redis_url`` names any node (``redis://`` or ``rediss://``, database 0); the
  client learns the others from it. The guard keys then share one hash tag
  (``receiver.guards.policy.CLUSTER_KEY_PREFIX``).

``redis.password`` applies in every mode, for a password kept out of the URL. Pure: the checks
here read no file and open no connection.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Protocol
from urllib.parse import urlsplit

from pydantic import BeforeValidator, SecretStr

from receiver.config.values import one_of, split_list

__all__ = [
    "DEFAULT_SENTINEL_PORT",
    "RedisMode",
    "RedisModeField",
    "SentinelAddresses",
    "check_redis",
    "sentinel_addresses",
    "split_address",
]

DEFAULT_SENTINEL_PORT = 26379


class RedisMode(StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


def sentinel_addresses(value: object) -> object:
    """``host:port`` items (comma-separated text or a list) as ``host:port`` strings, the port
    26379 when left out, an IPv6 host in brackets (``[::1]:26379``). ValueError naming the item
    that is no address."""
    listed = split_list(value)
    if not isinstance(listed, list | tuple):
        return listed
    out: list[str] = []
    for item in listed:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{item!r} is not a host:port address")
        host, port = split_address(item.strip())
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return tuple(out)


def _mode(value: object) -> object:
    return one_of(value, [m.value for m in RedisMode], {})


# The settings' field types: the text a user writes, checked before pydantic's own checks.
RedisModeField = Annotated[RedisMode, BeforeValidator(_mode)]


def split_address(item: str) -> tuple[str, int]:
    """``host:port`` (or ``host``, ``[v6]:port``) as (host, port). ValueError when it is not."""
    try:
        parts = urlsplit(f"//{item}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"{item!r} is not a host:port address: {exc}") from None
    if not host or parts.path or parts.username is not None:
        raise ValueError(f"{item!r} is not a host:port address (e.g. sentinel-0:26379)")
    return host, port or DEFAULT_SENTINEL_PORT


SentinelAddresses = Annotated[tuple[str, ...], BeforeValidator(sentinel_addresses)]


class _RedisSettings(Protocol):
    @property
    def redis_url(self) -> SecretStr | None: ...
    @property
    def redis_mode(self) -> RedisMode: ...
    @property
    def redis_sentinels(self) -> tuple[str, ...]: ...
    @property
    def redis_sentinel_master(self) -> str | None: ...
    @property
    def redis_password(self) -> SecretStr | None: ...
    @property
    def redis_sentinel_password(self) -> SecretStr | None: ...


def check_redis(settings: _RedisSettings, name: Callable[[str], str]) -> None:
    """The Redis settings fit together for their mode. ValueError naming, through ``name``
    (field -> the key the user wrote), what to set or remove; never a password."""
    mode, url = settings.redis_mode, settings.redis_url
    sentinel_only = [
        f for f in ("redis_sentinels", "redis_sentinel_master") if getattr(settings, f)
    ] + (["redis_sentinel_password"] if settings.redis_sentinel_password is not None else [])
    if mode is RedisMode.SENTINEL:
        if url is not None:
            raise ValueError(
                f"{name('redis_url')} names one server; with {name('redis_mode')}=sentinel the"
                f" master is asked of {name('redis_sentinels')}: remove {name('redis_url')} and"
                f" put the master's password in {name('redis_password')}"
            )
        for field in ("redis_sentinels", "redis_sentinel_master"):
            if not getattr(settings, field):
                raise ValueError(f"{name('redis_mode')}=sentinel needs {name(field)}")
    elif sentinel_only:
        raise ValueError(
            f"{name(sentinel_only[0])} is set but {name('redis_mode')} is {mode.value};"
            f" set {name('redis_mode')}=sentinel, or remove it"
        )
    if mode is RedisMode.CLUSTER:
        if url is None:
            raise ValueError(
                f"{name('redis_mode')}=cluster needs {name('redis_url')}, the address of any"
                " node (there is no embedded cluster)"
            )
        parts = urlsplit(url.get_secret_value())
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(
                f"{name('redis_url')}: a cluster is reached over TCP: redis:// or rediss://"
            )
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"{name('redis_url')}: a cluster has database 0 only")
    password = settings.redis_password
    if mode is RedisMode.STANDALONE and url is None and password is not None:
        raise ValueError(
            f"{name('redis_password')} is set but {name('redis_url')} is not: the embedded"
            f" Redis keeps its own password; set {name('redis_url')}, or remove it"
        )
    if url is not None and password is not None and urlsplit(url.get_secret_value()).password:
        raise ValueError(
            f"{name('redis_url')} holds a password and {name('redis_password')} is set;"
            " use only one of them"
        )
