"""What the service can be configured with: ``Settings``, validated and immutable.

Every default here is the one documented in the README's configuration table; the guards' have
one home, ``GuardSettings``, and the namespace deny list one, ``NamespacePolicy``.
Where the values come from (a YAML file, ``REMEDIATOR_*`` variables, secret files): ``sources``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from receiver import durations
from receiver.alertmanager import INTAKE_TIMEOUT_S, LATE_DELIVERY_WINDOW_S
from receiver.config.action_waits import ActionWaits
from receiver.config.connections import (
    HttpEndpointConfig,
    NotifyChannelConfig,
    PostgresDatabaseConfig,
    RedisConnectionConfig,
    check_names,
    json_map,
)
from receiver.config.inline import base_url, check_url, clear_url, connect_host, host_port
from receiver.config.redis_mode import RedisSettings, blank_as_none
from receiver.config.sizes import BODY_BYTES_BOUNDS, MIB, parse_size, size
from receiver.config.values import (
    WRITTEN,
    SettingPath,
    duration,
    duration_or_off,
    namespaces,
    one_of,
    slack_team_ids,
    split_list,
    url_shape,
    written,
)
from receiver.guards.policy import GuardSettings
from receiver.model import NamespacePolicy
from receiver.refusal_digest import REFUSAL_DIGEST_BOUNDS, REFUSAL_DIGEST_S
from remediations.params import Integer

__all__ = [
    "APPROVAL_TTL_S",
    "MIB",
    "WRITTEN",
    "ConfigError",
    "DatabasePooler",
    "DryRun",
    "LogFormat",
    "Settings",
    "parse_size",
]


class ConfigError(Exception):
    """A setting is missing, malformed or contradictory. The message names the key."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DryRun(StrEnum):
    TRUE = "true"
    FALSE = "false"
    AUTO = "auto"  # dry-run exactly when no Kubernetes credentials exist


class DatabasePooler(StrEnum):
    """``database.pooler`` (README, "PgBouncer"): ``none``, PostgreSQL or a session pooler;
    ``pgbouncer-transaction``, a transaction pooler, through which nothing may outlive a
    transaction: no statement cache, and LISTEN and the audit commands use ``direct_url``."""

    NONE = "none"
    PGBOUNCER_TRANSACTION = "pgbouncer-transaction"


# What an environment variable may say for yes and no.
_YES_NO = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


# Settings the guards' Lua script receives (milliseconds, counts) are bounded like rules'
# (receiver.durations.MAX_DURATION_S, a year); retention may be longer.
_COUNT_MAX = 1_000_000
_RETENTION_MAX_S = 10 * 365 * 86400.0

# Where each duration setting may lie (seconds, both ends included). A window or TTL under a
# second makes its guard meaningless (a lock gone before the action has begun, a budget that
# forgets what it counted); at 1ms, a client sending headers and body 50 ms apart was cut off
# unanswered, and a webhook would be 503 however healthy the store: each takes at least 1s.
# A readiness check may be under a probe's 1s, not under a healthy round trip (100ms); nor the
# worker's fallback poll, a claim statement each time (at 1ms, a busy loop against the store).
_INCIDENT_GAP_MAX_S = 7 * 86400.0
_YEAR = durations.MAX_DURATION_S
_DURATION_BOUNDS: dict[str, tuple[float, float]] = {
    "readiness_timeout_seconds": (0.1, _YEAR),
    "read_timeout_seconds": (1.0, _YEAR),
    "worker_lease_seconds": (1.0, _YEAR),
    "worker_poll_interval_seconds": (0.1, _YEAR),
    "worker_shutdown_grace_seconds": (0.0, _YEAR),
    "budget_window_seconds": (1.0, _YEAR),
    "breaker_window_seconds": (1.0, _YEAR),
    "breaker_open_for_seconds": (1.0, _YEAR),
    "lock_ttl_seconds": (1.0, _YEAR),
    "event_retention_seconds": (1.0, _RETENTION_MAX_S),
    "late_delivery_window_seconds": (0.0, _YEAR),
    "intake_timeout_seconds": (1.0, _YEAR),
    "approval_ttl_seconds": (1.0, _YEAR),
    "incident_gap_seconds": (1.0, _INCIDENT_GAP_MAX_S),
}
_SPELLED = {_YEAR: "a year", _RETENTION_MAX_S: "ten years", _INCIDENT_GAP_MAX_S: "7d"}

_GUARDS = GuardSettings()
# How long an approval stays open by default (approvals.ttl); the desk's default too.
APPROVAL_TTL_S = 1800.0
# Runs of one alert group less than this apart are one incident (review.incident_gap).
INCIDENT_GAP_S = 1800.0


class Settings(RedisSettings, ActionWaits):
    """Everything the service reads from its configuration. Immutable once loaded. The Redis
    settings (``redis_url``, ``redis_mode``, Sentinel's) are one group, ``RedisSettings``; how
    long a step waits for an unreachable system another, ``ActionWaits``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Stores. None means "start the embedded server under data_dir".
    database_url: SecretStr | None = None
    # What database_url reaches, and a direct connection for what a transaction pooler cannot
    # carry (database_url when unset); sources.load_settings checks that they fit together.
    database_pooler: DatabasePooler = DatabasePooler.NONE
    database_direct_url: SecretStr | None = None

    # Webhook authentication: bearer token and/or basic auth. The *_file fields record where a
    # secret came from; load_settings() has already read it into the secret field.
    webhook_token: SecretStr | None = None
    webhook_token_file: SettingPath | None = None
    webhook_username: str | None = None
    webhook_password: SecretStr | None = None
    webhook_password_file: SettingPath | None = None
    # Accepting webhooks without credentials must be asked for: the receiver triggers changes.
    allow_unauthenticated: bool = False

    # Operators (read runs and guards, pause and resume): a file each in operator_tokens_dir,
    # named after them, holding their token; load_settings() reads them into operator_tokens.
    operator_tokens_dir: SettingPath | None = None
    operator_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    # The token the CLI sends to a server's operator endpoints (serve does not read it).
    operator_token: SecretStr | None = None
    operator_token_file: SettingPath | None = None

    rules_dir: SettingPath = Path("rules")
    data_dir: SettingPath = Path(".data")

    dry_run: DryRun = DryRun.AUTO
    kubeconfig: SettingPath | None = None

    namespace_allow: tuple[str, ...] = ()
    namespace_deny: tuple[str, ...] = NamespacePolicy().deny

    host: str = "127.0.0.1"
    port: Integer = Field(default=9095, ge=0, le=65535)
    max_body_bytes: Integer = Field(default=16 * MIB)
    readiness_timeout_seconds: float = 2.0
    # How long a client may take to send a request's headers (from connecting, or from the
    # previous answer on a kept-alive connection) and, separately, its body.
    read_timeout_seconds: float = 30.0

    # Events in progress at once per worker process. Their calls to the store and the guards go
    # together (receiver.batching), so more in progress is less work per event; and each of
    # them waits for more others, so an unrelated alert waits longer. The storm runs behind
    # 24 are in docs/performance-history.md ("worker.concurrency's default").
    worker_concurrency: Integer = Field(default=24, ge=1, le=256)
    # Processes that run the worker, serve's own included (README, "Worker processes").
    worker_processes: Integer = Field(default=1, ge=1, le=64)
    worker_lease_seconds: float = 60.0
    worker_poll_interval_seconds: float = 1.0
    # Failed attempts before an alert event or a job is dead (receiver.worker, same default).
    worker_max_attempts: Integer = Field(default=10, ge=1, le=1000)
    worker_shutdown_grace_seconds: float = 20.0  # steps at SIGTERM (receiver.stop_budget)

    # The guards' defaults have one home, GuardSettings.
    budget_count: Integer = Field(default=_GUARDS.budget_count, ge=0, le=_COUNT_MAX)
    budget_window_seconds: float = _GUARDS.budget_window_s
    breaker_failures: Integer = Field(default=_GUARDS.breaker_failures, ge=1, le=_COUNT_MAX)
    breaker_window_seconds: float = _GUARDS.breaker_window_s
    breaker_open_for_seconds: float = _GUARDS.breaker_open_for_s
    lock_ttl_seconds: float = _GUARDS.lock_ttl_s

    event_retention_seconds: float = 30 * 86400.0
    # How late Alertmanager may deliver a firing notification it built before the alert
    # resolved (alertmanager.LATE_DELIVERY_WINDOW_S: group_interval 5m + two peer timeouts);
    # a firing of a resolved episode received later than this is a re-fire.
    late_delivery_window_seconds: float = LATE_DELIVERY_WINDOW_S
    # How long a webhook waits for its COMMIT before it is answered 503 (receiver.intake).
    intake_timeout_seconds: float = INTAKE_TIMEOUT_S

    log_level: str = "info"
    log_format: LogFormat = LogFormat.JSON

    # Named connections of the actions (receiver.config.connections); secrets from files.
    postgres_databases: dict[str, PostgresDatabaseConfig] = Field(default_factory=dict)
    redis_queues: dict[str, RedisConnectionConfig] = Field(default_factory=dict)
    http_endpoints: dict[str, HttpEndpointConfig] = Field(default_factory=dict)
    notify_channels: dict[str, NotifyChannelConfig] = Field(default_factory=dict)
    # Where people reach this service; notifications link back to runs under it.
    external_url: str = ""
    # A rule's refusals to a channel within this window after the first are folded into one
    # digest (receiver.refusal_digest); 0 ("off"): each is sent on its own.
    refusal_digest_seconds: float = REFUSAL_DIGEST_S

    @field_validator(
        "postgres_databases", "redis_queues", "http_endpoints", "notify_channels", mode="before"
    )
    @classmethod
    def _json_maps(cls, value: object) -> object:
        return json_map(value)

    @field_validator("postgres_databases", "redis_queues", "http_endpoints", "notify_channels")
    @classmethod
    def _connection_names(cls, value: dict[str, object]) -> dict[str, object]:
        return check_names(value, "connection")

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, value: str) -> str:
        if not value.strip():
            return ""
        # Recorded in the audit log: no credential. Links are built under it: one form.
        return base_url(clear_url(check_url(value), instead="give the address people open"))

    # Approvals (receiver/approvals); config.approvals.load_approvals reads their files.
    # Signing keys of approval links: one file per key id; the greatest key id signs.
    approval_keys_dir: SettingPath | None = None
    approval_ttl_seconds: float = APPROVAL_TTL_S
    # YAML: who may decide (by_rule, by_risk, default) and slack_users (Slack user id -> name).
    approvers_file: SettingPath | None = None
    # A header the SSO proxy in front of the service sets to the user's name; trusted only
    # from sso_trusted_proxies (addresses or networks).
    sso_user_header: str | None = None
    sso_trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    slack_signing_secret_file: SettingPath | None = None
    # The Slack workspaces (team ids) whose clicks are taken; empty: any the secret signs for.
    slack_team_ids: tuple[str, ...] = ()
    # The notify channel (notify.channels) approval requests and decisions are sent to.
    approval_notify_channel: str | None = None

    # The review (receiver/review): runs of one alert group less than this apart are one
    # incident.
    incident_gap_seconds: float = INCIDENT_GAP_S

    @field_validator("sso_trusted_proxies", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return split_list(value)

    @field_validator("slack_team_ids", mode="before")
    @classmethod
    def _teams(cls, value: object) -> object:
        return slack_team_ids(value)

    @field_validator("namespace_allow", mode="before")
    @classmethod
    def _allow(cls, value: object) -> object:
        return namespaces(value, deny=False)

    @field_validator("namespace_deny", mode="before")
    @classmethod
    def _deny(cls, value: object) -> object:
        return namespaces(value, deny=True)

    @field_validator(*_DURATION_BOUNDS, mode="before")
    @classmethod
    def _durations(cls, value: object, info: ValidationInfo) -> float:
        bounds = _DURATION_BOUNDS[str(info.field_name)]
        return duration(value, bounds, written=written(info), spelled=_SPELLED)

    @field_validator("refusal_digest_seconds", mode="before")
    @classmethod
    def _refusal_digest(cls, value: object, info: ValidationInfo) -> float:
        return duration_or_off(value, REFUSAL_DIGEST_BOUNDS, written=written(info))

    @field_validator("max_body_bytes", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return size(value, BODY_BYTES_BOUNDS)

    @field_validator("dry_run", mode="before")
    @classmethod
    def _dry_run(cls, value: object) -> object:
        if isinstance(value, bool):
            return DryRun.TRUE if value else DryRun.FALSE
        return one_of(value, [d.value for d in DryRun], _YES_NO)

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return one_of(value, _LOG_LEVELS, {"warn": "warning"})

    @field_validator("database_pooler", mode="before")
    @classmethod
    def _database_pooler(cls, value: object) -> object:
        return one_of(value, [p.value for p in DatabasePooler], {"": "none"})

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "database_url",
        "database_direct_url",
        "webhook_username",
        "approval_notify_channel",
        "sso_user_header",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return blank_as_none(value)

    @field_validator("database_url", "database_direct_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        return url_shape(value, ("postgresql", "postgres"), "PostgreSQL")

    def namespace_policy(self) -> NamespacePolicy:
        return NamespacePolicy(allow=self.namespace_allow, deny=self.namespace_deny)

    def guard_settings(self) -> GuardSettings:
        """The guards' settings as configured (seconds, counts)."""
        return GuardSettings(
            budget_count=self.budget_count,
            budget_window_s=self.budget_window_seconds,
            breaker_failures=self.breaker_failures,
            breaker_window_s=self.breaker_window_seconds,
            breaker_open_for_s=self.breaker_open_for_seconds,
            lock_ttl_s=self.lock_ttl_seconds,
            key_prefix=self.guard_key_prefix(),
        )

    @property
    def transaction_pooled(self) -> bool:
        """database_url reaches PostgreSQL through a transaction pooler (``database.pooler``):
        the store keeps no session state (no statement cache)."""
        return self.database_pooler is DatabasePooler.PGBOUNCER_TRANSACTION

    @property
    def auth_configured(self) -> bool:
        return self.webhook_token is not None or self.basic_auth_configured

    @property
    def basic_auth_configured(self) -> bool:
        return self.webhook_username is not None and self.webhook_password is not None

    def local_url(self, port: int | None = None) -> str:
        """``http://host:port`` at which a client on this machine reaches the listen address
        (``port`` when the one bound differs from the setting, e.g. port 0)."""
        return f"http://{host_port(connect_host(self.host), self.port if port is None else port)}"

    def listen_url(self, port: int | None = None) -> str:
        """``http://host:port`` of the listen address as configured, the wildcard kept
        (``http://[::]:9095``): what the banner and the log say the service listens on."""
        return f"http://{self.listen_address(port)}"

    def listen_address(self, port: int | None = None) -> str:
        """``host:port`` of the listen address, IPv6 bracketed (``[::]:9095``)."""
        return host_port(self.host, self.port if port is None else port)

    @property
    def dry_run_everywhere(self) -> bool:
        """``dry_run: true``: no action changes anything. Otherwise (``auto``, ``false``) each
        action runs live when the system it acts on is configured, and records ``dry_run``,
        naming the missing system, when it is not (the pipeline decides per step)."""
        return self.dry_run is DryRun.TRUE
