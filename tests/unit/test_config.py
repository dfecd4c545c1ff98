"""Settings: YAML plus REMEDIATOR_* variables, errors that name the key, secrets kept secret."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from receiver.config import (
    KEYS,
    ConfigError,
    DryRun,
    LogFormat,
    Settings,
    kube_credentials_present,
    load_settings,
)
from receiver.config.settings import WRITTEN
from receiver.model import NamespacePolicy
from receiver.store.events import LATE_DELIVERY_WINDOW_S


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment() -> None:
    s = load_settings(None, {})
    assert s.database_url is None
    assert s.redis_url is None
    assert s.webhook_token is None
    assert not s.auth_configured
    assert s.rules_dir == Path("rules")
    assert s.data_dir == Path(".data")
    assert s.dry_run is DryRun.AUTO
    assert s.host == "127.0.0.1"
    assert s.port == 9095
    assert s.max_body_bytes == 16 * 1024 * 1024
    assert s.namespace_allow == ()
    assert s.namespace_deny == ("kube-system", "kube-public", "kube-node-lease")
    assert s.log_level == "info"
    assert s.log_format is LogFormat.JSON
    assert s.late_delivery_window_seconds == LATE_DELIVERY_WINDOW_S  # the one derivation


def test_environment_wins_over_yaml(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        """
http: {host: 10.0.0.1, port: 8000, max_body_bytes: 4MiB}
rules_dir: /etc/remediator/rules
worker: {concurrency: 2}
""",
    )
    s = load_settings(config, {"REMEDIATOR_PORT": "9100", "REMEDIATOR_WORKER_CONCURRENCY": "6"})
    assert s.host == "10.0.0.1"
    assert s.port == 9100
    assert s.max_body_bytes == 4 * 1024 * 1024
    assert s.rules_dir == Path("/etc/remediator/rules")
    assert s.worker_concurrency == 6


def test_every_documented_variable_is_parsed(tmp_path: Path) -> None:
    token = write(tmp_path / "token", "  s3cret-token \n")
    password = write(tmp_path / "password", "pw\n")
    dsn = write(tmp_path / "dsn", "postgresql://remediator@db/orders\n")
    redis_url = write(tmp_path / "redis-url", "redis://jobs:6379/0\n")
    slack = write(tmp_path / "slack", "https://hooks.slack.example/services/T/B/X\n")
    operators = tmp_path / "operators"
    operators.mkdir()
    write(operators / "alice", "alice-token-0123456789\n")
    mine = write(tmp_path / "my-operator-token", "bob-token-0123456789\n")
    environ = {
        "REMEDIATOR_DATABASE_URL": "postgresql://u:p@db:5432/remediator",
        "REMEDIATOR_REDIS_URL": "redis://redis:6379/0",
        "REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token),
        "REMEDIATOR_WEBHOOK_USERNAME": "alertmanager",
        "REMEDIATOR_WEBHOOK_PASSWORD_FILE": str(password),
        "REMEDIATOR_ALLOW_UNAUTHENTICATED": "yes",
        "REMEDIATOR_OPERATOR_TOKENS_DIR": str(operators),
        "REMEDIATOR_OPERATOR_TOKEN_FILE": str(mine),
        "REMEDIATOR_RULES_DIR": "/rules",
        "REMEDIATOR_DATA_DIR": "/var/lib/remediator",
        "REMEDIATOR_DRY_RUN": "true",
        "REMEDIATOR_KUBECONFIG": "/kube/config",
        "REMEDIATOR_NAMESPACE_ALLOW": "demo, prod",
        "REMEDIATOR_NAMESPACE_DENY": "kube-system",
        "REMEDIATOR_HOST": "10.0.0.1",
        "REMEDIATOR_PORT": "8080",
        "REMEDIATOR_MAX_BODY_BYTES": "1048576",
        "REMEDIATOR_READINESS_TIMEOUT": "5s",
        "REMEDIATOR_READ_TIMEOUT": "1m",
        "REMEDIATOR_WORKER_CONCURRENCY": "16",
        "REMEDIATOR_WORKER_PROCESSES": "2",
        "REMEDIATOR_WORKER_LEASE": "2m",
        "REMEDIATOR_WORKER_POLL_INTERVAL": "500ms",
        "REMEDIATOR_WORKER_MAX_ATTEMPTS": "3",
        "REMEDIATOR_WORKER_SHUTDOWN_GRACE": "45s",
        "REMEDIATOR_BUDGET_COUNT": "5",
        "REMEDIATOR_BUDGET_WINDOW": "30m",
        "REMEDIATOR_BREAKER_FAILURES": "4",
        "REMEDIATOR_BREAKER_WINDOW": "2h",
        "REMEDIATOR_BREAKER_OPEN_FOR": "45m",
        "REMEDIATOR_LOCK_TTL": "5m",
        "REMEDIATOR_EVENT_RETENTION": "7d",
        "REMEDIATOR_LATE_DELIVERY_WINDOW": "90s",
        "REMEDIATOR_INTAKE_TIMEOUT": "3s",
        "REMEDIATOR_LOG_LEVEL": "DEBUG",
        "REMEDIATOR_LOG_FORMAT": "console",
        "REMEDIATOR_POSTGRES_DATABASES": json.dumps({"orders": {"dsn_file": str(dsn)}}),
        "REMEDIATOR_REDIS_QUEUES": json.dumps(
            {
                "jobs": {
                    "url_file": str(redis_url),
                    "queues": {"emails": {"layout": "celery", "key": "e", "dead_letter_key": "d"}},
                }
            }
        ),
        "REMEDIATOR_HTTP_ENDPOINTS": json.dumps({"flush": {"url": "https://cache/flush"}}),
        "REMEDIATOR_NOTIFY_CHANNELS": json.dumps(
            {"oncall": {"kind": "slack", "url_file": str(slack)}}
        ),
        "REMEDIATOR_EXTERNAL_URL": "https://remediator.example/",
        "REMEDIATOR_REFUSAL_DIGEST": "10m",
        "REMEDIATOR_APPROVAL_KEYS_DIR": "/etc/remediator/approval-keys",
        "REMEDIATOR_APPROVAL_TTL": "20m",
        "REMEDIATOR_APPROVERS_FILE": "/etc/remediator/approvers.yaml",
        "REMEDIATOR_SSO_USER_HEADER": "X-Forwarded-User",
        "REMEDIATOR_SSO_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
        "REMEDIATOR_SLACK_SIGNING_SECRET_FILE": "/etc/remediator/slack-signing-secret",
        "REMEDIATOR_SLACK_TEAM_IDS": "T0123ABCD, T0456EFGH",
        "REMEDIATOR_APPROVAL_NOTIFY_CHANNEL": "oncall",
        "REMEDIATOR_INCIDENT_GAP": "45m",
        "REMEDIATOR_UNREACHABLE_RETRY_FOR": "2m",
        "REMEDIATOR_UNDO_UNREACHABLE_RETRY_FOR": "1h",
        "REMEDIATOR_DATABASE_POOLER": "PgBouncer-Transaction",
        "REMEDIATOR_DATABASE_DIRECT_URL": "postgresql://u:p@db-direct:5432/remediator",
    }
    # The table and this test cover the same variables: a new setting needs a line here.
    inline = {
        "REMEDIATOR_WEBHOOK_TOKEN",
        "REMEDIATOR_WEBHOOK_PASSWORD",
        "REMEDIATOR_OPERATOR_TOKEN",
    }
    # Sentinel's settings exclude redis_url: tests/unit/test_redis_config.py parses them.
    inline |= {k.env for k in KEYS if k.yaml.startswith(("redis.sentinel", "redis.password"))}
    inline.add("REMEDIATOR_REDIS_MODE")
    assert {k.env for k in KEYS} - inline == set(environ)
    s = load_settings(None, environ)
    assert s.database_url is not None
    assert s.database_url.get_secret_value() == "postgresql://u:p@db:5432/remediator"
    assert s.redis_url is not None
    assert s.redis_url.get_secret_value() == "redis://redis:6379/0"
    assert s.webhook_token is not None
    assert s.webhook_token.get_secret_value() == "s3cret-token"
    assert s.webhook_token_file == token
    assert s.webhook_username == "alertmanager"
    assert s.allow_unauthenticated is True
    assert s.webhook_password is not None
    assert s.webhook_password.get_secret_value() == "pw"
    assert s.basic_auth_configured
    assert s.approval_ttl_seconds == 1200
    assert s.sso_trusted_proxies == ("10.0.0.0/8", "::1")
    assert s.slack_team_ids == ("T0123ABCD", "T0456EFGH")
    assert s.approval_notify_channel == "oncall"
    assert s.incident_gap_seconds == 2700.0
    assert s.unreachable_retry_seconds == 120.0
    assert s.undo_unreachable_retry_seconds == 3600.0
    assert s.refusal_digest_seconds == 600.0
    assert s.operator_tokens_dir == operators
    assert {k: v.get_secret_value() for k, v in s.operator_tokens.items()} == {
        "alice": "alice-token-0123456789"
    }
    assert s.operator_token is not None
    assert s.operator_token.get_secret_value() == "bob-token-0123456789"
    assert s.rules_dir == Path("/rules")
    assert s.data_dir == Path("/var/lib/remediator")
    assert s.dry_run is DryRun.TRUE
    assert s.kubeconfig == Path("/kube/config")
    assert s.namespace_allow == ("demo", "prod")
    assert s.namespace_deny == ("kube-system",)
    assert s.host == "10.0.0.1"
    assert s.port == 8080
    assert s.max_body_bytes == 1048576
    assert s.readiness_timeout_seconds == 5
    assert s.read_timeout_seconds == 60
    assert s.worker_concurrency == 16
    assert s.worker_processes == 2
    assert s.worker_lease_seconds == 120
    assert s.worker_poll_interval_seconds == 0.5
    assert s.worker_max_attempts == 3
    assert s.worker_shutdown_grace_seconds == 45
    assert s.budget_count == 5
    assert s.budget_window_seconds == 1800
    assert s.breaker_failures == 4
    assert s.breaker_window_seconds == 7200
    assert s.breaker_open_for_seconds == 2700
    assert s.lock_ttl_seconds == 300
    assert s.event_retention_seconds == 7 * 86400
    assert s.postgres_databases["orders"].dsn is not None
    assert (
        s.postgres_databases["orders"].dsn.get_secret_value() == "postgresql://remediator@db/orders"
    )
    assert s.redis_queues["jobs"].url is not None
    assert s.redis_queues["jobs"].url.get_secret_value() == "redis://jobs:6379/0"
    assert s.redis_queues["jobs"].queues["emails"].key == "e"
    assert s.http_endpoints["flush"].url == "https://cache/flush"
    assert s.notify_channels["oncall"].url is not None
    assert s.external_url == "https://remediator.example"
    assert s.late_delivery_window_seconds == 90
    assert s.intake_timeout_seconds == 3
    assert s.log_level == "debug"
    assert s.log_format is LogFormat.CONSOLE


def test_yaml_sections(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        """
database_url: postgresql://db/remediator
auth: {token: abc}
dry_run: false
kubernetes: {kubeconfig: /k}
namespaces: {allow: [demo], deny: []}
guards:
  budget: {count: 2, window: 1h}
  breaker: {failures: 1, window: 10m, open_for: 5m}
  lock_ttl: 1m
log: {level: warning, format: json}
""",
    )
    s = load_settings(config, {})
    assert s.webhook_token is not None
    assert s.webhook_token.get_secret_value() == "abc"
    assert s.dry_run is DryRun.FALSE
    assert s.kubeconfig == Path("/k")
    assert s.namespace_policy() == NamespacePolicy(allow=("demo",), deny=())
    assert (s.budget_count, s.budget_window_seconds) == (2, 3600)
    assert (s.breaker_failures, s.breaker_window_seconds, s.breaker_open_for_seconds) == (
        1,
        600,
        300,
    )
    assert s.lock_ttl_seconds == 60
    assert s.log_level == "warning"


def test_namespace_policy_default_denies_system_namespaces() -> None:
    policy = load_settings(None, {}).namespace_policy()
    assert not policy.permits("kube-system")
    assert policy.permits("demo")


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("REMEDIATOR_MAX_BODY_BYTES", "lots", "not a size"),
        ("REMEDIATOR_MAX_BODY_BYTES", "10", "'10' is out of range: give a size between 1KiB"),
        ("REMEDIATOR_MAX_BODY_BYTES", "2GiB", "'2GiB' is out of range: give a size between"),
        ("REMEDIATOR_PORT", "99999", "less than or equal to 65535"),
        ("REMEDIATOR_PORT", "http", "integer"),
        ("REMEDIATOR_DRY_RUN", "maybe", "true, false, auto"),
        ("REMEDIATOR_LOCK_TTL", "5 parsecs", "not a duration"),
        ("REMEDIATOR_BUDGET_WINDOW", "-1", "negative"),
        ("REMEDIATOR_WORKER_CONCURRENCY", "0", "greater than or equal to 1"),
        ("REMEDIATOR_WORKER_PROCESSES", "0", "greater than or equal to 1"),
        ("REMEDIATOR_WORKER_PROCESSES", "65", "less than or equal to 64"),
        ("REMEDIATOR_LOG_LEVEL", "loud", "debug, info"),
        ("REMEDIATOR_LOG_FORMAT", "xml", "json"),
    ],
)
def test_invalid_variable_names_the_key(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {name: value})
    assert info.value.message.startswith(f"{name}: ")
    assert problem in info.value.message


@pytest.mark.parametrize(
    "value", ["1025MiB", "99999999999999999999", "99999999999999999999999999GiB", "0"]
)
def test_a_size_out_of_range_is_said_in_sizes(value: str) -> None:
    # pydantic's bounds said "Input should be less than or equal to 1073741824 (got
    # 1074790400)", and a 36-digit number for the last: bytes the user never wrote.
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"REMEDIATOR_MAX_BODY_BYTES": value})
    assert info.value.message == (
        f"REMEDIATOR_MAX_BODY_BYTES: {value!r} is out of range: give a size between 1KiB and 1GiB"
    )


def test_a_size_of_thousands_of_digits_is_out_of_range_quoted_cut() -> None:
    # int() refuses over 4,300 digits with its own error, which was passed on.
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"REMEDIATOR_MAX_BODY_BYTES": "9" * 5000 + "GiB"})
    assert info.value.message == (
        f"REMEDIATOR_MAX_BODY_BYTES: '{'9' * 80}…' is out of range: give a size between 1KiB"
        " and 1GiB"
    )


def test_a_yaml_size_out_of_range_is_said_in_sizes(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "http:\n  max_body_bytes: 2000000000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, {})
    assert info.value.message == (
        "http.max_body_bytes: 2000000000 is out of range: give a size between 1KiB and 1GiB"
    )


def test_invalid_yaml_value_names_the_yaml_key(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "http:\n  max_body_bytes: huge\n")
    with pytest.raises(ConfigError, match=r"^http\.max_body_bytes: "):
        load_settings(config, {})


def test_unknown_yaml_key_is_an_error(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "http:\n  prot: 80\n")
    with pytest.raises(ConfigError, match=r"http\.prot: unknown setting"):
        load_settings(config, {})


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "http:\n  port: [1,\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: invalid YAML"):
        load_settings(config, {})


def test_a_control_character_names_file_and_line(tmp_path: Path) -> None:
    # PyYAML's reader refuses it with a character offset over two lines; the file's line is
    # what the user can find (the rule files say it the same way: yaml_lines.ControlCharacter).
    config = write(tmp_path / "c.yaml", "http:\n  host: a\n  port: 80\x01\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    assert caught.value.message == (
        f"{config}:3: invalid YAML: control character U+0001 is not allowed; write it as an"
        " escape in a double-quoted string if it is meant"
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # The second dry_run silently switched dry-run off: the service then acted for real.
        ("dry_run: true\nhttp:\n  port: 8080\ndry_run: false\n", r"c\.yaml:4: .*'dry_run'"),
        ("http: {port: 8080}\nhttp: {host: 127.0.0.1}\n", r"c\.yaml:2: .*'http'"),
        ("http:\n  port: 8080\n  port: 9090\n", r"c\.yaml:3: .*'port' \(first at line 2\)"),
    ],
)
def test_a_key_given_twice_is_an_error_naming_both_lines(
    tmp_path: Path, text: str, where: str
) -> None:
    config = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError, match=where) as caught:
        load_settings(config, {})
    assert "duplicate key" in caught.value.message


def test_a_merged_key_may_be_overridden(tmp_path: Path) -> None:
    text = "x-defaults: &d {port: 8080}\nhttp:\n  <<: *d\n  port: 9090\n"
    # Not a setting, so refused, but for its name: the merge itself is not a duplicate.
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path / "c.yaml", text), {})
    assert "duplicate" not in caught.value.message
    assert "x-defaults" in caught.value.message


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config file"):
        load_settings(tmp_path / "nope.yaml", {})


def test_unrelated_prefixed_variables_are_ignored() -> None:
    env = {"REMEDIATOR_CONTROLPLANE_BIN": "/opt/bin", "REMEDIATOR_CONFIG": "x"}
    assert load_settings(None, env) == load_settings(None, {})


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    s = load_settings(
        None,
        {
            "REMEDIATOR_WEBHOOK_TOKEN": "tok-123456",
            "REMEDIATOR_WEBHOOK_USERNAME": "am",
            "REMEDIATOR_WEBHOOK_PASSWORD": "pw-654321",
            "REMEDIATOR_DATABASE_URL": "postgresql://u:dbpass99@h/d",
            "REMEDIATOR_REDIS_URL": "redis://:redispass77@h/0",
        },
    )
    for text in (repr(s), str(s), str(s.model_dump())):
        for secret in ("tok-123456", "pw-654321", "dbpass99", "redispass77"):
            assert secret not in text


def test_secret_not_echoed_in_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            None, {"REMEDIATOR_DATABASE_URL": "postgresql://u:pw@h/d", "REMEDIATOR_PORT": "x"}
        )
    assert "pw@" not in info.value.message


def test_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    token = write(tmp_path / "token", "\n  abc.def \r\n")
    s = load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token)})
    assert s.webhook_token is not None
    assert s.webhook_token.get_secret_value() == "abc.def"


def test_token_and_token_file_together_is_an_error(tmp_path: Path) -> None:
    token = write(tmp_path / "token", "abc")
    with pytest.raises(ConfigError) as info:
        load_settings(
            None,
            {"REMEDIATOR_WEBHOOK_TOKEN": "abc", "REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token)},
        )
    assert "REMEDIATOR_WEBHOOK_TOKEN and REMEDIATOR_WEBHOOK_TOKEN_FILE" in info.value.message


def test_unreadable_token_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(missing)})
    assert info.value.message.startswith("REMEDIATOR_WEBHOOK_TOKEN_FILE: ")
    assert str(missing) in info.value.message


def test_token_file_that_cannot_be_read_names_the_file(tmp_path: Path) -> None:
    # A directory where the file should be: unreadable for root too, unlike a chmod 000 file.
    token = tmp_path / "token"
    token.mkdir()
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token)})
    assert info.value.message.startswith("REMEDIATOR_WEBHOOK_TOKEN_FILE: ")
    assert str(token) in info.value.message


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    token = write(tmp_path / "token", " \n")
    with pytest.raises(ConfigError, match="is empty"):
        load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token)})


def test_password_file_and_half_configured_basic_auth(tmp_path: Path) -> None:
    password = write(tmp_path / "pw", "hunter2\n")
    s = load_settings(
        None,
        {"REMEDIATOR_WEBHOOK_USERNAME": "am", "REMEDIATOR_WEBHOOK_PASSWORD_FILE": str(password)},
    )
    assert s.webhook_password is not None
    assert s.webhook_password.get_secret_value() == "hunter2"
    with pytest.raises(ConfigError, match=r"^REMEDIATOR_WEBHOOK_PASSWORD: basic auth needs both"):
        load_settings(None, {"REMEDIATOR_WEBHOOK_USERNAME": "am"})


def test_kubeconfig_variable_and_ours_wins() -> None:
    assert load_settings(None, {"KUBECONFIG": "/a:/b"}).kubeconfig == Path("/a")
    s = load_settings(None, {"KUBECONFIG": "/a", "REMEDIATOR_KUBECONFIG": "/c"})
    assert s.kubeconfig == Path("/c")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", DryRun.TRUE), ("yes", DryRun.TRUE), ("0", DryRun.FALSE), ("AUTO", DryRun.AUTO)],
)
def test_dry_run_spellings(value: str, expected: DryRun) -> None:
    assert load_settings(None, {"REMEDIATOR_DRY_RUN": value}).dry_run is expected


def test_dry_run_everywhere_only_when_asked() -> None:
    assert Settings(dry_run=DryRun.TRUE).dry_run_everywhere
    assert not Settings(dry_run=DryRun.AUTO).dry_run_everywhere
    assert not Settings(dry_run=DryRun.FALSE).dry_run_everywhere


def test_kube_credentials_present(tmp_path: Path) -> None:
    kubeconfig = write(tmp_path / "kubeconfig", "apiVersion: v1\n")
    assert kube_credentials_present(Settings(kubeconfig=kubeconfig), {})
    assert not kube_credentials_present(Settings(kubeconfig=tmp_path / "missing"), {})
    assert not kube_credentials_present(Settings(), {"HOME": str(tmp_path)})


def test_max_attempts_default_is_the_workers() -> None:
    # Two homes that cannot import each other (config sits below the worker): kept in step here.
    from receiver.worker import DEFAULT_MAX_ATTEMPTS

    assert Settings().worker_max_attempts == DEFAULT_MAX_ATTEMPTS
    with pytest.raises(ConfigError, match=r"worker\.max_attempts|WORKER_MAX_ATTEMPTS"):
        load_settings(None, {"REMEDIATOR_WORKER_MAX_ATTEMPTS": "0"})


def _readme_rows() -> dict[str, tuple[str, str]]:
    """env var -> (YAML key, documented default) from the README's configuration table."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {}
    for line in text.splitlines():
        if not line.startswith("| `REMEDIATOR_"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        env, yaml_key, default = cells[0].strip("`"), cells[1].strip("`"), cells[2]
        assert env not in rows, f"{env} documented twice"
        rows[env] = (yaml_key, default)
    return rows


def test_the_readme_table_lists_every_setting_with_its_yaml_key() -> None:
    documented = {env: yaml_key for env, (yaml_key, _) in _readme_rows().items()}
    assert documented == {key.env: key.yaml for key in KEYS}


def test_the_readme_defaults_are_the_settings_defaults() -> None:
    defaults = Settings()
    checked = 0
    for key in KEYS:
        _, documented = _readme_rows()[key.env]
        if not (documented.startswith("`") and documented.endswith("`")):
            continue  # a sentence ("embedded", "unset (...)"): nothing literal to compare
        literal = documented.strip("`")
        value = getattr(defaults, key.field)
        # As a user would write it: a unit-less default here would be refused at start-up.
        written = Settings.model_validate({key.field: literal}, context=WRITTEN)
        parsed = getattr(written, key.field)
        assert parsed == value, f"{key.env}: README says {literal!r}, the default is {value!r}"
        checked += 1
    assert checked >= 15


# -- operators' tokens -----------------------------------------------------------------------------


def _operators(tmp_path: Path, **tokens: str) -> Path:
    directory = tmp_path / "operators"
    directory.mkdir(exist_ok=True)
    for name, token in tokens.items():
        write(directory / name, token)
    return directory


def test_operator_tokens_as_a_mounted_secret_shows_them(tmp_path: Path) -> None:
    """A Kubernetes Secret volume: keys are symlinks into ..data, which is skipped."""
    directory = tmp_path / "operators"
    real = directory / "..2026_01_01_00_00_00.000"
    real.mkdir(parents=True)
    write(real / "alice", "alice-token-0123456789\n")
    write(real / "ops.bot", "  bot-token-0123456789  \n")
    (directory / "..data").symlink_to(real.name)
    for name in ("alice", "ops.bot"):
        (directory / name).symlink_to(f"..data/{name}")
    s = load_settings(None, {"REMEDIATOR_OPERATOR_TOKENS_DIR": str(directory)})
    assert {k: v.get_secret_value() for k, v in s.operator_tokens.items()} == {
        "alice": "alice-token-0123456789",
        "ops.bot": "bot-token-0123456789",
    }
    assert "alice-token" not in repr(s)


def test_an_empty_operator_directory_means_no_operators(tmp_path: Path) -> None:
    s = load_settings(None, {"REMEDIATOR_OPERATOR_TOKENS_DIR": str(_operators(tmp_path))})
    assert s.operator_tokens == {}


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"alice": "short"}, "at least 16 characters"),
        ({"alice": "   \n"}, "is empty"),
        ({"alice": "same-token-0123456789", "bob": "same-token-0123456789"}, "share a token"),
        ({"al ice": "alice-token-0123456789"}, "the operator's name"),
    ],
)
def test_bad_operator_tokens_name_the_file_not_the_token(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    directory = _operators(tmp_path, **files)
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"REMEDIATOR_OPERATOR_TOKENS_DIR": str(directory)})
    assert problem in info.value.message
    assert "REMEDIATOR_OPERATOR_TOKENS_DIR" in info.value.message
    for token in files.values():
        if token.strip():
            assert token.strip() not in info.value.message


def test_operator_tokens_dir_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        load_settings(None, {"REMEDIATOR_OPERATOR_TOKENS_DIR": str(tmp_path / "absent")})


def test_the_webhook_token_cannot_also_be_an_operators(tmp_path: Path) -> None:
    directory = _operators(tmp_path, alice="shared-token-0123456789")
    with pytest.raises(ConfigError, match="give each role its own") as info:
        load_settings(
            None,
            {
                "REMEDIATOR_OPERATOR_TOKENS_DIR": str(directory),
                "REMEDIATOR_WEBHOOK_TOKEN": "shared-token-0123456789",
            },
        )
    assert "shared-token" not in info.value.message


@pytest.mark.parametrize(
    ("setting", "content", "named"),
    [
        (
            "REMEDIATOR_OPERATOR_TOKEN_FILE",
            "SuperSecretTok123456\n# rotated\n",
            "REMEDIATOR_OPERATOR_TOKEN_FILE",
        ),
        (
            "REMEDIATOR_WEBHOOK_TOKEN_FILE",
            "SuperSecretTok123456\rold\n",
            "REMEDIATOR_WEBHOOK_TOKEN_FILE",
        ),
        ("REMEDIATOR_OPERATOR_TOKENS_DIR", "SuperSecretTok123456\nSuperSecretTok654321\n", "alice"),
    ],
)
def test_a_token_with_a_second_line_is_refused_naming_its_file(
    tmp_path: Path, setting: str, content: str, named: str
) -> None:
    """A bearer token travels in an HTTP header: a control character in it made the CLI fail
    with a traceback (found by attack), and a server's such token could never be matched."""
    if setting.endswith("_DIR"):
        (tmp_path / "operators").mkdir()
        write(tmp_path / "operators" / "alice", content)
        value = str(tmp_path / "operators")
    else:
        value = str(write(tmp_path / "token", content))
    with pytest.raises(ConfigError, match="control character") as caught:
        load_settings(None, {setting: value})
    assert named in caught.value.message
    assert "SuperSecret" not in caught.value.message


@pytest.mark.parametrize(
    ("host", "listen", "local"),
    [
        ("::", "http://[::]:9095", "http://127.0.0.1:9095"),
        ("::1", "http://[::1]:9095", "http://[::1]:9095"),
        ("fd00::5", "http://[fd00::5]:9095", "http://[fd00::5]:9095"),
        ("0.0.0.0", "http://0.0.0.0:9095", "http://127.0.0.1:9095"),  # noqa: S104
        ("10.0.0.5", "http://10.0.0.5:9095", "http://10.0.0.5:9095"),
        ("remediator.local", "http://remediator.local:9095", "http://remediator.local:9095"),
    ],
)
def test_urls_of_the_listen_address_bracket_an_ipv6_host(
    host: str, listen: str, local: str
) -> None:
    # The banner said `http://:::9095` for REMEDIATOR_HOST=::, which no client can open.
    settings = load_settings(None, {"REMEDIATOR_HOST": host})
    assert settings.listen_url() == listen
    assert settings.local_url() == local
    assert settings.listen_url(40123) == listen.replace("9095", "40123")
    assert settings.listen_address() == listen.removeprefix("http://")
    # Each reads back as the host and port it was built from.
    parts = urlsplit(settings.listen_url())
    assert (parts.hostname, parts.port) == (host, 9095)
