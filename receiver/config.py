"""Settings from one YAML file plus ``REMEDIATOR_*`` environment variables, validated at start-up.

Every setting has one YAML path (``http.max_body_bytes``) and one environment variable
(``REMEDIATOR_MAX_BODY_BYTES``); the variable wins. Errors name the key the user wrote, so the
message says what to fix. Secrets read from files are stripped and kept as ``SecretStr``, so they
never show up in ``repr()`` or logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from receiver import durations
from receiver.model import NamespacePolicy

__all__ = [
    "ENV_PREFIX",
    "KEYS",
    "ConfigError",
    "DryRun",
    "LogFormat",
    "Settings",
    "kube_credentials_present",
    "load_settings",
    "parse_duration",
    "parse_size",
]

ENV_PREFIX = "REMEDIATOR_"
MIB = 1024 * 1024
DEFAULT_DENY = ("kube-system", "kube-public", "kube-node-lease")
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class ConfigError(Exception):
    """A setting is missing, malformed or contradictory. The message names the key."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DryRun(StrEnum):
    TRUE = "true"
    FALSE = "false"
    AUTO = "auto"  # dry-run exactly when no Kubernetes credentials exist


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def parse_duration(value: object) -> float:
    """Seconds from a plain number of seconds or a rule-file duration (``90s``, ``1h30m``)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            seconds = durations.parse_duration(value)
    else:
        raise ValueError("expected a duration such as 30s, 15m or 1h")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


_SIZE = re.compile(r"(\d+)\s*(b|k|kb|ki|kib|m|mb|mi|mib|g|gb|gi|gib)?", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
}


def parse_size(value: str) -> int:
    """Bytes from ``16777216``, ``16MiB``, ``16Mi`` or ``20MB``."""
    m = _SIZE.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not a size (use bytes, or e.g. 16MiB, 20MB)")
    return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseModel):
    """Everything the service reads from its configuration. Immutable once loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Stores. None means "start the embedded server under data_dir".
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None

    # Webhook authentication: bearer token and/or basic auth. The *_file fields record where a
    # secret came from; load_settings() has already read it into the secret field.
    webhook_token: SecretStr | None = None
    webhook_token_file: Path | None = None
    webhook_username: str | None = None
    webhook_password: SecretStr | None = None
    webhook_password_file: Path | None = None
    # Accepting webhooks without credentials must be asked for: the receiver triggers changes.
    allow_unauthenticated: bool = False

    rules_dir: Path = Path("rules")
    data_dir: Path = Path(".data")

    dry_run: DryRun = DryRun.AUTO
    kubeconfig: Path | None = None

    namespace_allow: tuple[str, ...] = ()
    namespace_deny: tuple[str, ...] = DEFAULT_DENY

    host: str = "127.0.0.1"
    port: int = Field(default=9095, ge=0, le=65535)
    max_body_bytes: int = Field(default=16 * MIB, ge=1024)
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)

    worker_concurrency: int = Field(default=4, ge=1, le=256)
    worker_lease_seconds: float = Field(default=60.0, gt=0)
    worker_poll_interval_seconds: float = Field(default=1.0, gt=0)

    budget_count: int = Field(default=10, ge=0)
    budget_window_seconds: float = Field(default=3600.0, gt=0)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_window_seconds: float = Field(default=3600.0, gt=0)
    breaker_open_for_seconds: float = Field(default=1800.0, gt=0)
    lock_ttl_seconds: float = Field(default=600.0, gt=0)

    event_retention_seconds: float = Field(default=30 * 86400.0, gt=0)

    log_level: str = "info"
    log_format: LogFormat = LogFormat.JSON

    @field_validator("namespace_allow", "namespace_deny", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator(
        "worker_lease_seconds",
        "worker_poll_interval_seconds",
        "budget_window_seconds",
        "breaker_window_seconds",
        "breaker_open_for_seconds",
        "lock_ttl_seconds",
        "readiness_timeout_seconds",
        "event_retention_seconds",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: object) -> float:
        return parse_duration(value)

    @field_validator("max_body_bytes", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("dry_run", mode="before")
    @classmethod
    def _dry_run(cls, value: object) -> object:
        if isinstance(value, bool):
            return DryRun.TRUE if value else DryRun.FALSE
        if isinstance(value, str):
            text = value.strip().lower()
            aliases = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false"}
            aliases["off"] = "false"
            text = aliases.get(text, text)
            if text not in {d.value for d in DryRun}:
                raise ValueError(f"{value!r} is not one of true, false, auto")
            return text
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "warn":
                text = "warning"
            if text not in ("debug", "info", "warning", "error", "critical"):
                raise ValueError(f"{value!r} is not one of debug, info, warning, error, critical")
            return text
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url", "redis_url", "webhook_username", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def namespace_policy(self) -> NamespacePolicy:
        return NamespacePolicy(allow=self.namespace_allow, deny=self.namespace_deny)

    @property
    def auth_configured(self) -> bool:
        return self.webhook_token is not None or self.basic_auth_configured

    @property
    def basic_auth_configured(self) -> bool:
        return self.webhook_username is not None and self.webhook_password is not None

    def effective_dry_run(self, has_kube_credentials: bool) -> bool:
        if self.dry_run is DryRun.AUTO:
            return not has_kube_credentials
        return self.dry_run is DryRun.TRUE


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: its field on Settings, its YAML path and its environment variable."""

    field: str
    yaml: str
    env: str


def _key(field: str, yaml_path: str, env: str | None = None) -> Key:
    return Key(field, yaml_path, ENV_PREFIX + (env or field.upper()))


# The single table of every setting; README's list of variables is generated from the same names.
KEYS: tuple[Key, ...] = (
    _key("database_url", "database_url"),
    _key("redis_url", "redis_url"),
    _key("webhook_token", "auth.token", "WEBHOOK_TOKEN"),
    _key("webhook_token_file", "auth.token_file", "WEBHOOK_TOKEN_FILE"),
    _key("webhook_username", "auth.username", "WEBHOOK_USERNAME"),
    _key("webhook_password", "auth.password", "WEBHOOK_PASSWORD"),
    _key("webhook_password_file", "auth.password_file", "WEBHOOK_PASSWORD_FILE"),
    _key("allow_unauthenticated", "auth.allow_unauthenticated", "ALLOW_UNAUTHENTICATED"),
    _key("rules_dir", "rules_dir"),
    _key("data_dir", "data_dir"),
    _key("dry_run", "kubernetes.dry_run", "DRY_RUN"),
    _key("kubeconfig", "kubernetes.kubeconfig", "KUBECONFIG"),
    _key("namespace_allow", "namespaces.allow", "NAMESPACE_ALLOW"),
    _key("namespace_deny", "namespaces.deny", "NAMESPACE_DENY"),
    _key("host", "http.host", "HOST"),
    _key("port", "http.port", "PORT"),
    _key("max_body_bytes", "http.max_body_bytes", "MAX_BODY_BYTES"),
    _key("readiness_timeout_seconds", "http.readiness_timeout", "READINESS_TIMEOUT"),
    _key("worker_concurrency", "worker.concurrency", "WORKER_CONCURRENCY"),
    _key("worker_lease_seconds", "worker.lease", "WORKER_LEASE"),
    _key("worker_poll_interval_seconds", "worker.poll_interval", "WORKER_POLL_INTERVAL"),
    _key("budget_count", "guards.budget.count", "BUDGET_COUNT"),
    _key("budget_window_seconds", "guards.budget.window", "BUDGET_WINDOW"),
    _key("breaker_failures", "guards.breaker.failures", "BREAKER_FAILURES"),
    _key("breaker_window_seconds", "guards.breaker.window", "BREAKER_WINDOW"),
    _key("breaker_open_for_seconds", "guards.breaker.open_for", "BREAKER_OPEN_FOR"),
    _key("lock_ttl_seconds", "guards.lock_ttl", "LOCK_TTL"),
    _key("event_retention_seconds", "store.event_retention", "EVENT_RETENTION"),
    _key("log_level", "log.level", "LOG_LEVEL"),
    _key("log_format", "log.format", "LOG_FORMAT"),
)
_BY_FIELD = {k.field: k for k in KEYS}
_BY_YAML = {k.yaml: k for k in KEYS}
_BY_ENV = {k.env: k for k in KEYS}


def _flatten_yaml(data: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for name, value in data.items():
        path = f"{prefix}{name}"
        if path in _BY_YAML:
            out[path] = value
        elif isinstance(value, Mapping):
            _flatten_yaml(value, f"{path}.", out)
        else:
            raise ConfigError(f"{path}: unknown setting")


def _read_yaml(config_file: Path) -> dict[str, Any]:
    try:
        text = config_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{config_file}: cannot read config file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{config_file}:{mark.line + 1}" if mark is not None else str(config_file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{config_file}: the top level must be a mapping of settings")
    flat: dict[str, Any] = {}
    _flatten_yaml(data, "", flat)
    return flat


def _read_secret(path: Path, source: str) -> SecretStr:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{source}: cannot read secret file {path}: {reason}") from exc
    if not value:
        raise ConfigError(f"{source}: secret file {path} is empty")
    return SecretStr(value)


def load_settings(config_file: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read ``config_file`` (optional), overlay ``REMEDIATOR_*`` variables, validate, read secrets.

    Raises ConfigError naming the YAML key or variable at fault.
    """
    raw: dict[str, Any] = {}
    source: dict[str, str] = {}  # field -> the key the user wrote, for error messages

    if config_file is not None:
        for path, value in _read_yaml(config_file).items():
            key = _BY_YAML[path]
            raw[key.field] = value
            source[key.field] = path

    # KUBECONFIG is the ecosystem's variable; ours overrides it.
    if "KUBECONFIG" in environ and environ["KUBECONFIG"].strip():
        first = environ["KUBECONFIG"].split(os.pathsep)[0]
        raw["kubeconfig"] = first
        source["kubeconfig"] = "KUBECONFIG"

    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        env_key = _BY_ENV.get(name)
        if env_key is None:
            # Other tools share the prefix (e.g. the test control plane's variables).
            continue
        raw[env_key.field] = value
        source[env_key.field] = name

    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None

    return _resolve_secrets(settings, source)


def _describe(exc: ValidationError, source: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        name = source.get(field) or (_BY_FIELD[field].env if field in _BY_FIELD else field)
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and err["type"] not in ("value_error",) and field not in _SECRET_FIELDS:
            message = f"{message} (got {err['input']!r})"
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


_SECRET_FIELDS = frozenset({"database_url", "redis_url", "webhook_token", "webhook_password"})


def _resolve_secrets(settings: Settings, source: Mapping[str, str]) -> Settings:
    def name(field: str) -> str:
        return source.get(field, _BY_FIELD[field].env)

    update: dict[str, Any] = {}
    for secret, file_field in (
        ("webhook_token", "webhook_token_file"),
        ("webhook_password", "webhook_password_file"),
    ):
        path: Path | None = getattr(settings, file_field)
        if path is None:
            continue
        if getattr(settings, secret) is not None:
            raise ConfigError(
                f"{name(secret)} and {name(file_field)} are both set; use only one of them"
            )
        update[secret] = _read_secret(path, name(file_field))

    token = update.get("webhook_token", settings.webhook_token)
    if token is not None and not token.get_secret_value().strip():
        raise ConfigError(f"{name('webhook_token')}: must not be empty")

    password = update.get("webhook_password", settings.webhook_password)
    if (settings.webhook_username is None) != (password is None):
        missing = "webhook_password" if password is None else "webhook_username"
        present = "webhook_username" if password is None else "webhook_password"
        raise ConfigError(
            f"{name(missing)}: basic auth needs both a username and a password "
            f"({name(present)} is set)"
        )
    return settings.model_copy(update=update) if update else settings


def kube_credentials_present(settings: Settings, environ: Mapping[str, str]) -> bool:
    """True when a kubeconfig or in-cluster service-account credentials can be found."""
    if settings.kubeconfig is not None:
        return settings.kubeconfig.expanduser().is_file()
    if environ.get("KUBERNETES_SERVICE_HOST") and IN_CLUSTER_TOKEN.is_file():
        return True
    home = environ.get("HOME")
    return home is not None and (Path(home) / ".kube" / "config").is_file()
