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

TLS: a ``rediss://`` ``redis_url``, or with Sentinel ``redis.sentinel.tls`` (the sentinels
and the master they name). ``redis.tls.ca_file`` (the CA the servers' certificates are checked
against; the system's without it), ``redis.tls.cert_file`` and ``redis.tls.key_file`` (this
client's certificate, for servers with ``tls-auth-clients``) apply to either, and only to TLS.

``redis.password`` applies in every mode, for a password kept out of the URL. Pure: the checks
here read no file and open no connection.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, BeforeValidator, SecretStr, field_validator

from receiver.config.inline import host_port
from receiver.config.values import SettingPath, one_of, split_list, url_shape
from receiver.guards.policy import CLUSTER_KEY_PREFIX, GuardSettings

__all__ = [
    "DEFAULT_SENTINEL_PORT",
    "TLS_FILES",
    "RedisMode",
    "RedisModeField",
    "RedisSettings",
    "SentinelAddresses",
    "blank_as_none",
    "check_redis",
    "guard_key_prefix",
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
    that is no address by its place and host, never its text: it may hold a password."""
    listed = split_list(value)
    if not isinstance(listed, list | tuple):
        return listed
    out: list[str] = []
    for place, item in enumerate(listed, 1):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"item {place} is not a host:port address (e.g. sentinel-0:26379)")
        try:
            host, port = split_address(item.strip())
        except ValueError as exc:
            raise ValueError(f"item {place}: {exc}") from None
        out.append(host_port(host, port))
    return tuple(out)


def _mode(value: object) -> object:
    return one_of(value, [m.value for m in RedisMode], {})


# The settings' field types: the text a user writes, checked before pydantic's own checks.
RedisModeField = Annotated[RedisMode, BeforeValidator(_mode)]


def split_address(item: str) -> tuple[str, int]:
    """``host:port`` (or ``host``, ``[v6]:port``) as (host, port). ValueError when it is not,
    quoting at most the host: a URL or ``user:password@host`` pasted here holds a password."""
    if "@" in item or "/" in item:
        raise ValueError(
            "not a host:port address (e.g. sentinel-0:26379): no scheme, user or password;"
            " the sentinels' password goes in redis.sentinel.password (or its _file)"
        )
    try:
        parts = urlsplit(f"//{item}")
        host = parts.hostname
    except ValueError:
        host = None
    if not host:
        raise ValueError("not a host:port address (e.g. sentinel-0:26379)")
    try:
        port = parts.port
    except ValueError:  # not digits, or past 65535
        port = 0
    # Port 0, or a colon with nothing after it (``host:``), is no sentinel's: read as "left
    # out", each sent the service to 26379 in silence.
    if port == 0 or (port is None and item.rstrip().endswith(":")):
        example = f"[{host}]:26379" if ":" in host else f"{host}:26379"
        raise ValueError(
            f"host {host!r}: the port is not a number from 1 to 65535 (e.g. {example})"
        )
    return host, DEFAULT_SENTINEL_PORT if port is None else port


SentinelAddresses = Annotated[tuple[str, ...], BeforeValidator(sentinel_addresses)]


def blank_as_none(value: object) -> object:
    """A setting's value with an empty or blank string read as unset (None)."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


class RedisSettings(BaseModel):
    """How the guards reach Redis, as settings: ``Settings`` inherits this group (its fields,
    with the others' YAML paths and variables in ``sources.KEYS``); ``check_redis`` says whether
    they fit together. Passwords as the webhook's: the value, or a file holding it."""

    # None: the embedded server under data_dir (standalone only).
    redis_url: SecretStr | None = None
    redis_mode: RedisModeField = RedisMode.STANDALONE
    redis_sentinels: SentinelAddresses = ()
    redis_sentinel_master: str | None = None
    redis_password: SecretStr | None = None
    redis_password_file: SettingPath | None = None
    redis_sentinel_password: SecretStr | None = None
    redis_sentinel_password_file: SettingPath | None = None
    redis_sentinel_tls: bool = False
    redis_tls_ca_file: SettingPath | None = None
    redis_tls_cert_file: SettingPath | None = None
    redis_tls_key_file: SettingPath | None = None

    @field_validator(
        "redis_url",
        "redis_sentinel_master",
        "redis_password",
        "redis_sentinel_password",
        mode="before",
    )
    @classmethod
    def _redis_blank_is_none(cls, value: object) -> object:
        # Named apart from Settings' own blank check: a subclass's validator of the same name
        # replaces this one, and these fields would take "" as a URL, a password, a name.
        return blank_as_none(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        return url_shape(value, ("redis", "rediss", "unix"), "Redis")

    @property
    def redis_tls(self) -> bool:
        """The guards' Redis is reached over TLS: a rediss:// URL, or Sentinel's
        ``redis_sentinel_tls``."""
        if self.redis_mode is RedisMode.SENTINEL:
            return self.redis_sentinel_tls
        url = self.redis_url
        return url is not None and urlsplit(url.get_secret_value()).scheme == "rediss"

    @property
    def redis_external(self) -> bool:
        """Redis is configured (a URL, or Sentinel); False: the service embeds its own."""
        return self.redis_url is not None or self.redis_mode is RedisMode.SENTINEL

    def guard_key_prefix(self) -> str:
        """The guard keys' prefix in this mode (``guard_key_prefix``)."""
        return guard_key_prefix(self.redis_mode)


def guard_key_prefix(mode: RedisMode) -> str:
    """One hash tag for every guard key on a cluster (``CLUSTER_KEY_PREFIX``: why);
    elsewhere the untagged keys earlier versions wrote, so an upgrade keeps its state."""
    if mode is RedisMode.CLUSTER:
        return CLUSTER_KEY_PREFIX
    return GuardSettings().key_prefix


def check_redis(settings: RedisSettings, name: Callable[[str], str]) -> None:
    """The Redis settings fit together for their mode. ValueError naming, through ``name``
    (field -> the key the user wrote), what to set or remove; never a password."""
    mode, url = settings.redis_mode, settings.redis_url
    sentinel_only = [
        f for f in ("redis_sentinels", "redis_sentinel_master") if getattr(settings, f)
    ] + (["redis_sentinel_password"] if settings.redis_sentinel_password is not None else [])
    sentinel_only += ["redis_sentinel_tls"] if settings.redis_sentinel_tls else []
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
            f" set {name('redis_mode')} to sentinel, or remove it"
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
    given = None if url is None else urlsplit(url.get_secret_value())
    database = "" if given is None else given.path.strip("/")
    numbered = database.isascii() and database.isdigit()
    if given is not None and given.scheme != "unix" and database and not numbered:
        # redis-py reads a path that is no number as no database, and uses 0 in silence; a
        # number is ASCII digits (isdigit() alone took "²", which int() then refused).
        raise ValueError(
            f"{name('redis_url')}: the database (the URL's path) must be a number, e.g."
            " redis://host:6379/0"
        )
    _check_tls(settings, name)
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


# The TLS files' settings, and the query parameter of a rediss:// URL that says the same (in
# redis-py's words: what the client is given either way).
TLS_FILES = {
    "redis_tls_ca_file": "ssl_ca_certs",
    "redis_tls_cert_file": "ssl_certfile",
    "redis_tls_key_file": "ssl_keyfile",
}


def _check_tls(settings: RedisSettings, name: Callable[[str], str]) -> None:
    """The TLS files are set only for a Redis reached over TLS, a certificate with its key,
    and not twice (the setting and the URL's ``ssl_*`` parameter). Reads no file: that the
    files hold what they should is ``receiver.config.redis_tls``'s check."""
    given = [field for field in TLS_FILES if getattr(settings, field) is not None]
    if not given:
        return
    if not settings.redis_tls:
        how = (
            f"set {name('redis_sentinel_tls')}"
            if settings.redis_mode is RedisMode.SENTINEL
            else f"write rediss:// in {name('redis_url')}"
        )
        raise ValueError(
            f"{name(given[0])} is set but the guards' Redis is not reached over TLS: {how},"
            " or remove it"
        )
    if (settings.redis_tls_cert_file is None) != (settings.redis_tls_key_file is None):
        present, missing = (
            ("redis_tls_cert_file", "redis_tls_key_file")
            if settings.redis_tls_key_file is None
            else ("redis_tls_key_file", "redis_tls_cert_file")
        )
        raise ValueError(
            f"{name(present)} is set without {name(missing)}: a client certificate needs"
            " both, the certificate and its private key"
        )
    url = settings.redis_url
    query = parse_qs(urlsplit(url.get_secret_value()).query) if url is not None else {}
    for field in given:
        if TLS_FILES[field] in query:
            raise ValueError(
                f"{name(field)} is set and {name('redis_url')} gives {TLS_FILES[field]} too;"
                " use only one of them"
            )
