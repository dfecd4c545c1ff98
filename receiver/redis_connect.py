"""The guards' Redis client as configured: one server, the master a Sentinel names, or a cluster.

All three are redis-py's own asyncio clients, and none connects by being built: an unreachable
Redis makes the guards unavailable (they fail closed), and /readyz says so (and serve's start,
``write_refusal``, as it does of a Redis that answers but takes no write).

- one server: ``redis.asyncio.Redis`` from ``redis_url`` (or the embedded server's URL);
- Sentinel: ``redis.asyncio.Sentinel(...).master_for(name)``: every new connection asks the
  sentinels for the master, and a connection to a master demoted by a failover is dropped on
  its first READONLY reply, so the next attempt reaches the new master;
- cluster: ``redis.asyncio.RedisCluster`` from ``redis_url`` (any node; it learns the others and
  follows MOVED replies). ``require_full_coverage`` is off: the guards' keys live in one slot,
  and they keep working while a master of another slot is being replaced.

One server's and Sentinel's connections pack commands with hiredis (``_packed_by_hiredis``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import hiredis
from pydantic import SecretStr
from redis.asyncio import Redis, RedisCluster, Sentinel
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from receiver.config import ConfigError, Settings
from receiver.config.redact import unreadable
from receiver.config.redis_mode import RedisMode, split_address
from receiver.config.redis_tls import sentinel_tls_options, tls_options
from receiver.guards.policy import GuardError, GuardUnavailable
from receiver.guards.scripts import said
from receiver.redis_refusal import (
    MASTER,
    MODE,
    READINESS_TIMEOUT,
    SENTINEL_PASSWORD,
    SENTINEL_TLS,
    SENTINELS,
    URL,
    refusal_hint,
    refused_command,
)

__all__ = ["GuardRedis", "connect_redis", "mode_mismatch", "write_refusal"]


# The same bounds the service always had on one Redis round trip's socket.
SOCKET: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}


# Argument types hiredis packs byte for byte as redis-py's own packer does: the exact types,
# not their subclasses (redis-py writes an IntEnum with its repr, hiredis as its number), nor
# a bool (redis-py refuses it).
_PACKED_AS_IS = frozenset({str, int, bytes})


class _HiredisPacking:
    """A redis-py asyncio connection whose commands hiredis packs, in C: redis-py's asyncio
    connection packs in Python whether hiredis is installed or not (its sync one does not), a
    visible share of a storm event's CPU (the guards' admissions are EVALSHA commands of tens
    of arguments, pipelined by the dozen). Arguments of other types go to redis-py's packer,
    which packs or refuses them as it always did."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if not _PACKED_AS_IS.issuperset(map(type, args)):
            return super().pack_command(*args)  # type: ignore[misc, no-any-return]
        # As redis-py does: a command name of several words is sent as several arguments.
        name = args[0]
        if isinstance(name, str):
            args = (*name.encode().split(), *args[1:])
        elif b" " in name:
            args = (*name.split(), *args[1:])
        return [hiredis.pack_command(args)]

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        """A pipeline's commands as one buffer: what redis-py's own loop over them joins
        together too, but for its cuts around long arguments (the same bytes either way)."""
        packed: list[bytes] = []
        for command in commands:
            packed.extend(self.pack_command(*command))
        return [b"".join(packed)]


def _packed_by_hiredis(client: Redis) -> Redis:
    """``client``, its pool now making connections of its own connection class (TCP, TLS, a
    Unix socket, a Sentinel's master) that pack commands with hiredis (``_HiredisPacking``).
    Nothing has connected yet: the pool makes its connections on first use."""
    pool = client.connection_pool
    base = pool.connection_class
    if not issubclass(base, _HiredisPacking):
        pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return client


def _asked_once() -> dict[str, Any]:
    """Options of a client that asks one question at start-up (what a server is, what a
    sentinel says): no retries. redis-py retries a connection error ten times with backoff by
    default, an authentication failure among them: a wrong password took 3.5 s to say so, and
    on a busy machine longer than the 5 s the question is given, which then read as "no
    answer" and hid what to fix."""
    return {**SOCKET, "retry": Retry(NoBackoff(), 0)}


@dataclass
class GuardRedis:
    """The client the guards use, and what else to close with it (the sentinels' clients)."""

    client: Redis | RedisCluster
    where: str
    mode: RedisMode
    sentinel: Sentinel | None = None
    tls: bool = False  # a rediss:// URL, or Sentinel's redis.sentinel.tls

    async def close(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            for client in self.sentinel.sentinels:
                await client.aclose()


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def connect_redis(settings: Settings, url: str | None) -> GuardRedis:
    """The guards' client for ``settings.redis_mode``; ``url`` is ``redis_url`` or the embedded
    server's (None with Sentinel). Raises ConfigError for what redis-py cannot take (a URL it
    cannot read, Sentinel without its addresses), naming the variable, never the password."""
    password = _secret(settings.redis_password)
    if settings.redis_mode is RedisMode.SENTINEL:
        if not settings.redis_sentinels or not settings.redis_sentinel_master:
            raise ConfigError(f"{MODE} is sentinel: it needs {SENTINELS} and {MASTER}")
        over_tls = sentinel_tls_options(settings)
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            [split_address(address) for address in settings.redis_sentinels],
            sentinel_kwargs={
                **SOCKET,
                "password": _secret(settings.redis_sentinel_password),
                **over_tls,
            },
            **SOCKET,
        )
        master = settings.redis_sentinel_master
        # redis-py's pool takes ``ssl`` to make TLS connections to whichever master the
        # sentinels name (SentinelManagedSSLConnection).
        client = _packed_by_hiredis(
            sentinel.master_for(master, redis_class=Redis, password=password, **over_tls)
        )
        where = f"master {master!r} of sentinels {', '.join(settings.redis_sentinels)}"
        return GuardRedis(client, where, RedisMode.SENTINEL, sentinel, tls=bool(over_tls))
    source = URL if settings.redis_url else "embedded Redis"
    if url is None:
        raise ConfigError(f"{MODE} is {settings.redis_mode.value}: it needs {source}")
    extra: dict[str, Any] = {} if password is None else {"password": password}
    extra |= tls_options(settings)
    parts = urlsplit(url)
    where = parts.netloc.rpartition("@")[2] or "the local socket"
    tls = parts.scheme == "rediss"
    try:
        if settings.redis_mode is RedisMode.CLUSTER:
            cluster = RedisCluster.from_url(url, require_full_coverage=False, **SOCKET, **extra)
            return GuardRedis(cluster, f"cluster through {where}", RedisMode.CLUSTER, tls=tls)
        client = _packed_by_hiredis(Redis.from_url(url, **SOCKET, **extra))
        return GuardRedis(client, where, RedisMode.STANDALONE, tls=tls)
    except (ValueError, RedisClusterException) as exc:
        raise ConfigError(f"{source}: {unreadable('Redis', url, exc)}") from None


async def _server_mode(client: Redis) -> str | None:
    """What the server is (``INFO server``'s ``redis_mode``: standalone, cluster or sentinel);
    None when it does not say now (unreachable: the guards fail closed and /readyz says so)."""
    try:
        async with asyncio.timeout(SOCKET["socket_timeout"]):
            info = await client.info("server")
    except (RedisError, OSError, TimeoutError):
        return None
    mode = info.get("redis_mode")
    return None if mode is None else str(mode)


async def _ask_sentinel(
    address: str, master: str, password: str | None, tls: dict[str, Any]
) -> bool | str:
    """True when the sentinel at ``address`` names the master ``master``; what to fix when it
    says why it cannot; False when it does not answer now. ``tls``: ``sentinel_tls_options``."""
    host, port = split_address(address)
    client = Redis(host=host, port=port, password=password, **_asked_once(), **tls)
    try:
        async with asyncio.timeout(SOCKET["socket_timeout"]):
            reply = await client.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL GET-MASTER-ADDR-BY-NAME", master
            )
    except AuthenticationError:
        return (
            f"{address} does not take {SENTINEL_PASSWORD} as given: set it to the"
            " requirepass of the sentinels' sentinel.conf (or remove it if they have none), or"
            f" it is no sentinel but a Redis server ({SENTINELS} lists sentinels,"
            " port 26379 by default)"
        )
    except ResponseError as exc:
        if "unknown command" not in str(exc).lower():
            return False
        return (
            f"{address} is no sentinel (it knows no SENTINEL command):"
            f" {SENTINELS} lists the sentinels (port 26379 by default), not the"
            " Redis servers"
        )
    except (RedisError, OSError, TimeoutError):
        return False
    finally:
        await client.aclose()
    if not reply:
        return (
            f"{address} monitors no master named {master!r}: set"
            f" {MASTER} to the name in its `sentinel monitor <name> ...`"
        )
    return True


async def _sentinel_problem(settings: Settings) -> str | None:
    """What to fix when no sentinel names the master and one of them says why (not a
    sentinel, another master name, its password); None when one names it, or none answers
    (the guards then fail closed and /readyz says so)."""
    master = settings.redis_sentinel_master or ""
    password = _secret(settings.redis_sentinel_password)
    tls = sentinel_tls_options(settings)
    answers = await asyncio.gather(
        *(_ask_sentinel(address, master, password, tls) for address in settings.redis_sentinels)
    )
    if any(answer is True for answer in answers):
        return None
    problems = [answer for answer in answers if isinstance(answer, str)]
    return "; ".join(problems) if problems else None


async def mode_mismatch(built: GuardRedis, settings: Settings, url: str | None) -> str | None:
    """What to fix when the server ``redis_url`` names is not what ``redis.mode`` says: a node
    of a cluster in standalone mode (every admission's keys span slots, and each run fails),
    a sentinel (it refuses the guards' scripts), or one server in cluster mode (the client
    never finds a cluster, and each run waits); with Sentinel, when no sentinel names the
    master and one says why (``_sentinel_problem``). None when they agree, or when the server
    does not answer now."""
    if built.mode is RedisMode.SENTINEL:
        return await _sentinel_problem(settings)
    if url is None:
        return None
    if isinstance(built.client, Redis):
        server = await _server_mode(built.client)
    else:
        password = _secret(settings.redis_password)
        extra: dict[str, Any] = {} if password is None else {"password": password}
        probe = Redis.from_url(url, **_asked_once(), **extra, **tls_options(settings))
        try:
            server = await _server_mode(probe)
        finally:
            await probe.aclose()
    where = built.where.removeprefix("cluster through ")
    if server is None or server == built.mode.value:
        return None
    if server == RedisMode.SENTINEL.value:
        return (
            f"{URL} names a Redis Sentinel ({where}), which keeps no data: set"
            f" {MODE} to sentinel, its address in {SENTINELS} and the"
            f" name it monitors in {MASTER}, and remove {URL}"
        )
    if server == RedisMode.CLUSTER.value:
        return (
            f"{URL} names a node of a Redis Cluster ({where}) but"
            f" {MODE} is {built.mode.value}, with which every admission would"
            f" fail (its keys span the cluster's slots): set {MODE} to cluster"
        )
    return (
        f"{MODE} is cluster but {URL} names a server not in cluster"
        f" mode ({where}, redis_mode:{server}), where the guards would never be available: set"
        f" {MODE} to standalone, or name a node of the cluster"
    )


async def write_refusal(
    built: GuardRedis,
    probe: Callable[[], Awaitable[None]],
    timeout_s: float,
    opening_s: float = SOCKET["socket_timeout"],
) -> str | None:
    """What to check when the guards' Redis does not take a write now: ``probe`` is the
    readiness check's write (``Guards.probe``), given ``timeout_s`` seconds (the readiness
    timeout, as /readyz is) on an open connection, and ``opening_s`` for a first write that
    opens one (``_write_within``). The server's reply in one line
    (``said``), and for the refusals a mistyped URL or a server's state explains, what to
    check. None when it takes the write. Never a reason not to start: Redis may be failing
    over, and meanwhile the guards fail closed and /readyz says so."""
    try:
        await _write_within(probe, timeout_s, opening_s)
    except TimeoutError:
        reply = f"no answer within {READINESS_TIMEOUT}, {timeout_s:g} s"
        if built.tls:
            # A server without TLS reads the TLS handshake as the start of a command and
            # waits for the rest: it never answers, and nothing else says why.
            reply += (
                f"; {SENTINEL_TLS} is on: check that the sentinels and the servers (and those"
                f" ports) take TLS, or turn it off"
                if built.mode is RedisMode.SENTINEL
                else f"; {URL} is rediss://, which speaks TLS: check that the server (and that"
                " port) takes TLS, or write redis://"
            )
        cause: BaseException | None = None
    except (GuardUnavailable, GuardError) as exc:
        cause = exc.__cause__
        reply = said(cause) if cause is not None else str(exc)
    except Exception as exc:  # a check that says what it found, never one that stops a start
        cause, reply = exc, said(exc)
    else:
        return None
    hint = refusal_hint(built.mode, cause)
    check = f" {hint};" if hint else ""
    if isinstance(cause, NoPermissionError):
        # The ACL may refuse the readiness key (or SET) alone and allow what the guards run:
        # then every admission goes on, and only /readyz fails. Saying they all fail is untrue.
        refused = "commands" if refused_command(cause) else "keys"
        outcome = (
            " /readyz is 503 until it does, and every admission fails closed if the guards'"
            f" {refused} are refused too (its event is retried)"
        )
    else:
        outcome = (
            " until it does, every admission fails closed (its event is retried) and /readyz is 503"
        )
    # The reply's final period off: it is one clause of this line.
    return (
        f"the guards' Redis ({built.where}) does not take a write: {reply.rstrip('.')};{check}"
        f"{outcome}"
    )


async def _write_within(
    probe: Callable[[], Awaitable[None]], timeout_s: float, opening_s: float
) -> None:
    """``probe`` answered within ``timeout_s`` on an open connection, as /readyz's are; raises
    TimeoutError otherwise. Made at once with the mode check, its first try opens a connection
    of its own, whose handshake (AUTH, CLIENT SETINFO, a sentinel's lookup: a round trip each)
    a distant Redis takes longer for than the write: that try has ``opening_s`` (the mode
    check's bound, 5 s, which the start waits anyway), and one slower than ``timeout_s`` is
    timed again, on the connection it opened."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(max(timeout_s, opening_s)):
        await probe()
    if loop.time() - started > timeout_s:
        async with asyncio.timeout(timeout_s):
            await probe()
