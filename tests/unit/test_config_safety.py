"""Settings that remove a safety or are probably a typo are refused or said out loud:

- an empty namespace deny list (``REMEDIATOR_NAMESPACE_DENY=``) is refused; ``none`` or ``[]``
  says it on purpose, and what became allowed is a loud start-up notice (error log, banner);
- namespaces that are no DNS-1123 label are refused, naming the value;
- unknown ``REMEDIATOR_*`` variables are refused, naming the closest setting; the tools' own are
  known;
- the SSO header trusted from every address (0.0.0.0/0, ::/0) is refused;
- a short webhook token is a warning; store URLs that cannot be read are refused without
  quoting the password; guard settings are bounded like rules.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from receiver.config import KEYS, ConfigError, Settings, load_settings
from receiver.config.approvals import load_approvals
from receiver.config.checks import newly_allowed, start_up_notices
from receiver.config.variables import ENV_PREFIX, FOREIGN_PREFIXES, FOREIGN_VARIABLES
from receiver.startup import Generated, banner, storage_text

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:9095"


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_an_empty_deny_list_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"REMEDIATOR_NAMESPACE_DENY": value})
    message = caught.value.message
    assert message.startswith("REMEDIATOR_NAMESPACE_DENY: ")
    assert "kube-system" in message
    assert "'none'" in message


def test_an_empty_deny_list_in_yaml_text_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text('namespaces:\n  deny: ""\n')
    with pytest.raises(ConfigError, match=r"^namespaces\.deny: empty"):
        load_settings(config, {})


@pytest.mark.parametrize("value", ["none", "None", " NONE "])
def test_none_denies_nothing_on_purpose_and_says_so_loudly(value: str) -> None:
    settings = load_settings(None, {"REMEDIATOR_NAMESPACE_DENY": value})
    assert settings.namespace_deny == ()
    assert newly_allowed(settings) == ["kube-system", "kube-public", "kube-node-lease"]
    [notice] = start_up_notices(settings)
    assert notice.loud
    assert "actions may touch kube-system, kube-public, kube-node-lease" in notice.message


def test_an_empty_yaml_list_denies_nothing(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("namespaces:\n  deny: []\n")
    assert load_settings(config, {}).namespace_deny == ()


def test_a_deny_list_that_keeps_one_default_names_the_others() -> None:
    settings = load_settings(None, {"REMEDIATOR_NAMESPACE_DENY": "kube-system,prod"})
    assert newly_allowed(settings) == ["kube-public", "kube-node-lease"]


def test_an_allow_list_that_excludes_the_system_namespaces_allows_none_of_them() -> None:
    settings = load_settings(
        None, {"REMEDIATOR_NAMESPACE_DENY": "none", "REMEDIATOR_NAMESPACE_ALLOW": "shop,web"}
    )
    assert newly_allowed(settings) == []
    assert start_up_notices(settings) == []


def test_the_default_deny_list_says_nothing() -> None:
    assert start_up_notices(Settings()) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REMEDIATOR_NAMESPACE_ALLOW", "Kube_System"),
        ("REMEDIATOR_NAMESPACE_ALLOW", "shop,web.prod"),
        ("REMEDIATOR_NAMESPACE_DENY", "kube-system,-x"),
        ("REMEDIATOR_NAMESPACE_DENY", "a" * 64),
    ],
)
def test_a_namespace_that_is_no_dns_label_is_refused_naming_it(name: str, value: str) -> None:
    bad = next(part for part in value.split(",") if part not in ("shop", "kube-system"))
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {name: value})
    assert caught.value.message.startswith(f"{name}: {bad!r} is not a namespace name")


def test_unknown_variables_are_refused_naming_the_closest_setting() -> None:
    # REMEDIATOR_DRYRUN was a warning, and serve started live: the same typo in YAML was exit 2.
    environ = {
        "REMEDIATOR_PORTT": "9000",
        "REMEDIATOR_DRYRUN": "true",
        "REMEDIATOR_SOMETHING_ELSE": "x",
        "REMEDIATOR_PORT": "9000",
        "REMEDIATOR_CONTROLPLANE_BIN": "/opt",
        "REMEDIATOR_TEST_DATABASE_URL": "postgres://x",
        "OTHER_PORTT": "1",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    assert caught.value.message == (
        "REMEDIATOR_DRYRUN: unknown setting (did you mean REMEDIATOR_DRY_RUN?); "
        "REMEDIATOR_PORTT: unknown setting (did you mean REMEDIATOR_PORT?); "
        "REMEDIATOR_SOMETHING_ELSE: unknown setting"
    )


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        # Typos: an underscore dropped or added, a word misspelt, a plural slip.
        ("DRYRUN", "DRY_RUN"),
        ("DRY_RUNN", "DRY_RUN"),
        ("LOGLEVEL", "LOG_LEVEL"),
        ("KUBE_CONFIG", "KUBECONFIG"),
        ("WEBHOOK_TOKENFILE", "WEBHOOK_TOKEN_FILE"),
        ("PORTT", "PORT"),
        ("LOG_LEVL", "LOG_LEVEL"),
        ("DATABSE_URL", "DATABASE_URL"),
        ("DATABASE_URI", "DATABASE_URL"),
        ("WORKER_CONCURENCY", "WORKER_CONCURRENCY"),
        ("SLACK_SIGNING_SECRET_FIEL", "SLACK_SIGNING_SECRET_FILE"),
        ("OPERATOR_TOKENS_FILE", "OPERATOR_TOKEN_FILE"),
        ("NOTIFY_CHANNEL", "NOTIFY_CHANNELS"),
        ("NAMESPACES_DENY", "NAMESPACE_DENY"),
        ("RULE_DIR", "RULES_DIR"),
        # Other words, or a word missing: difflib suggested the name in the comment, which is
        # another setting (DEBUG -> DRY_RUN would switch dry-run on).
        ("CONFIG_FILE", None),  # KUBECONFIG
        ("CONFIG_DIR", None),  # KUBECONFIG
        ("KUBE_CONTEXT", None),  # KUBECONFIG
        ("DEBUG", None),  # DRY_RUN
        ("POSTGRES_URL", None),  # REDIS_URL
        ("REDIS_USER", None),  # REDIS_URL
        ("REDIS_HOST", None),  # REDIS_MODE
        ("DATABASE_PASSWORD", None),  # DATABASE_POOLER
        ("WEBHOOK_SECRET", None),  # WEBHOOK_USERNAME
        ("SLACK_TOKEN", None),  # WEBHOOK_TOKEN
        ("LOG_FILE", None),  # LOG_LEVEL
        ("RULES_FILE", None),  # RULES_DIR
        ("METRICS_PORT", None),  # PORT
        ("WORKERS", None),  # WORKER_LEASE
        ("TIMEOUT", None),  # READ_TIMEOUT
    ],
)
def test_an_unknown_variable_is_told_only_the_setting_it_is_a_typo_of(
    name: str, meant: str | None
) -> None:
    # The names are written without the prefix: test_every_variable_the_tools_read_is_known
    # reads every REMEDIATOR_* name in tests/ as one a tool reads.
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {ENV_PREFIX + name: "x"})
    hint = f" (did you mean {ENV_PREFIX}{meant}?)" if meant else ""
    assert caught.value.message == f"{ENV_PREFIX}{name}: unknown setting{hint}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # The README promises what the variables get: the setting a key is a typo of.
        ("dryrun: true\n", "1: dryrun: unknown setting (did you mean dry_run?)"),
        ("http:\n  prot: 9096\n", "2: http.prot: unknown setting (did you mean http.port?)"),
        ("htpp:\n  port: 9096\n", "2: htpp.port: unknown setting (did you mean http.port?)"),
        (
            "guards:\n  budget:\n    cuont: 5\n",
            "3: guards.budget.cuont: unknown setting (did you mean guards.budget.count?)",
        ),
        ("redis:\n  sentinels: [a]\n", "2: redis.sentinels: unknown setting"),  # other words
        # A section given a value: its keys go under it.
        (
            "http: 9096\n",
            "1: http: a section, not a value: write its settings under it (http.endpoints,"
            " http.host, http.max_body_bytes, http.port, http.read_timeout,"
            " http.readiness_timeout)",
        ),
    ],
)
def test_an_unknown_yaml_key_is_told_the_setting_it_is_a_typo_of(
    tmp_path: Path, text: str, message: str
) -> None:
    # Named by the file and line of the key (the file is remediator.yaml in tmp_path).
    assert refusal_of_settings_file(tmp_path, text) == f"{tmp_path / 'remediator.yaml'}:{message}"


def refusal_of_settings_file(tmp_path: Path, text: str) -> str:
    """The ConfigError's message for a settings file holding ``text``."""
    config = tmp_path / "remediator.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    return caught.value.message


def test_the_tools_variables_and_others_prefixes_are_no_settings_and_pass() -> None:
    environ = {
        "REMEDIATOR_CONTROLPLANE_BIN": "/opt",
        "REMEDIATOR_CONFIG": "x",
        "REMEDIATOR_TEST_DATABASE_URL": "postgres://x",
        "OTHER_PORTT": "1",
    }
    assert load_settings(None, environ) == load_settings(None, {})


def test_every_variable_the_tools_read_is_known() -> None:
    # The build scripts, the Makefile, the test support and the bench read REMEDIATOR_* variables
    # of their own: an unknown variable is refused at start-up, so each must be known.
    used: set[str] = set()
    places = [ROOT / "Makefile", ROOT / "Dockerfile"]
    for folder in ("hack", "tests", "bench", "deploy", ".ci"):
        places += (ROOT / folder).rglob("*")
    for path in places:
        if path.is_file() and path.suffix in ("", ".sh", ".py", ".go", ".mk", ".yaml", ".yml"):
            used |= set(
                re.findall(r"REMEDIATOR_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="ignore"))
            )
    settings = {k.env for k in KEYS}
    foreign = {
        name
        for name in used - settings
        if name not in FOREIGN_VARIABLES and not name.startswith(FOREIGN_PREFIXES)
    }
    assert foreign <= {"REMEDIATOR_PORTT", "REMEDIATOR_DRYRUN", "REMEDIATOR_SOMETHING_ELSE"}


@pytest.mark.parametrize(
    "everyone",
    [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.0/8,::/0",
        # Every address without a prefix of 0 (the check once looked for that only), and a
        # large part of the internet.
        "0.0.0.0/1,128.0.0.0/1",
        "::/1,8000::/1",
        ",".join(f"{i}.0.0.0/8" for i in range(11, 20)),
        "203.0.0.0/15",
        "10.0.0.0/7",
        "2001:db8::/32",
        # Every IPv4 address written as IPv6 (mapped, and NAT64's prefix).
        "::ffff:0:0/96",
        "64:ff9b::/96",
    ],
)
def test_trusting_every_address_with_the_sso_header_is_refused(everyone: str) -> None:
    settings = load_settings(
        None,
        {
            "REMEDIATOR_SSO_USER_HEADER": "X-Forwarded-User",
            "REMEDIATOR_SSO_TRUSTED_PROXIES": everyone,
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_approvals(settings)
    assert caught.value.message.startswith("REMEDIATOR_SSO_TRUSTED_PROXIES: ")
    assert "anyone could name any approver" in caught.value.message


@pytest.mark.parametrize(
    "proxies",
    [
        "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,127.0.0.1/32,::1/128",
        "fc00::/7",
        "203.0.113.0/24,198.51.100.7/32",
        "203.0.0.0/16,2001:db8:1::/48",
    ],
)
def test_private_blocks_and_a_site_of_public_addresses_may_be_trusted(proxies: str) -> None:
    settings = load_settings(
        None,
        {
            "REMEDIATOR_SSO_USER_HEADER": "X-Forwarded-User",
            "REMEDIATOR_SSO_TRUSTED_PROXIES": proxies,
        },
    )
    assert len(load_approvals(settings).trusted_proxies) == proxies.count(",") + 1


def test_every_address_without_an_sso_header_trusts_nothing_and_is_fine() -> None:
    settings = load_settings(None, {"REMEDIATOR_SSO_TRUSTED_PROXIES": "0.0.0.0/0"})
    assert len(load_approvals(settings).trusted_proxies) == 1


def test_a_short_webhook_token_is_a_warning_not_an_error() -> None:
    short = load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN": "0123456789"})
    [notice] = start_up_notices(short)
    assert not notice.loud
    assert "10 characters; use at least 16" in notice.message
    assert "0123456789" not in notice.message
    assert start_up_notices(load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN": "x" * 16})) == []


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("REMEDIATOR_DATABASE_URL", "postgres://a:s3cret-pw@[::1", "Invalid IPv6 URL"),
        ("REMEDIATOR_DATABASE_URL", "mysql://a:s3cret-pw@h/db", "postgresql://"),
        ("REMEDIATOR_REDIS_URL", "rediss://x:s3cret-pw@host:notaport/0", "notaport"),
        ("REMEDIATOR_REDIS_URL", "http://x:s3cret-pw@host/0", "redis://"),
    ],
)
def test_a_store_url_that_cannot_be_read_is_refused_without_its_password(
    name: str, value: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {name: value})
    assert caught.value.message.startswith(f"{name}: not a ")
    assert problem in caught.value.message
    assert "s3cret-pw" not in caught.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REMEDIATOR_LOCK_TTL", "99999999999w"),
        ("REMEDIATOR_BUDGET_WINDOW", "53w"),
        ("REMEDIATOR_BREAKER_OPEN_FOR", "400d"),
        ("REMEDIATOR_EVENT_RETENTION", "600w"),
        ("REMEDIATOR_BUDGET_COUNT", "99999999999999999999"),
        ("REMEDIATOR_BREAKER_FAILURES", "1000001"),
    ],
)
def test_guard_settings_are_bounded_like_rules(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: "):
        load_settings(None, {name: value})


@pytest.mark.parametrize(
    ("database", "redis", "says"),
    [
        (None, None, "embedded PostgreSQL and Redis under .data"),
        (None, "redis://r:6379/0", "embedded PostgreSQL under .data; external Redis"),
        (
            "postgresql://db/x",
            None,
            "external PostgreSQL (REMEDIATOR_DATABASE_URL); embedded Redis",
        ),
        ("postgresql://db/x", "redis://r:6379/0", "external PostgreSQL and Redis"),
    ],
)
def test_the_banner_says_which_store_is_embedded(
    database: str | None, redis: str | None, says: str
) -> None:
    settings = Settings(
        database_url=SecretStr(database) if database else None,
        redis_url=SecretStr(redis) if redis else None,
    )
    assert storage_text(settings).startswith(says)
    text = banner(
        settings, URL, dry_run=True, live=[], embedded=True, shown=Generated(), sample=None
    )
    assert f"  storage:    {storage_text(settings)}\n" in text


def test_the_banner_names_a_custom_data_dir_in_the_cli_hint(tmp_path: Path) -> None:
    custom = tmp_path / "my data"
    text = banner(
        Settings(data_dir=custom),
        URL,
        dry_run=True,
        live=[],
        embedded=True,
        shown=Generated(),
        sample=None,
    )
    assert f"REMEDIATOR_DATA_DIR='{custom}' remediator runs" in text
    plain = banner(
        Settings(), URL, dry_run=True, live=[], embedded=True, shown=Generated(), sample=None
    )
    assert "REMEDIATOR_DATA_DIR" not in plain


def test_the_banner_carries_the_loud_warnings() -> None:
    text = banner(
        Settings(),
        URL,
        dry_run=True,
        live=[],
        embedded=True,
        shown=Generated(),
        sample=None,
        warnings=["actions may touch kube-system"],
    )
    assert "  WARNING:    actions may touch kube-system\n" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "postgres:\n  databases:\n    orders: {dsn_fil: /run/dsn}\n",
            "postgres.databases.orders.dsn_fil: unknown key (did you mean 'dsn_file'?)",
        ),
        (
            "notify:\n  channels:\n    oncall: {knd: slack, url_file: /run/url}\n",
            "notify.channels.oncall.knd: unknown key (did you mean 'kind'?)",
        ),
        (
            "redis:\n  queues:\n    jobs:\n      url_file: /run/url\n"
            "      queues: {q: {layout: list, key: k, dead_leter_key: d}}\n",
            "redis.queues.jobs.queues.q.dead_leter_key: unknown key (did you mean"
            " 'dead_letter_key'?)",
        ),
    ],
)
def test_an_unknown_key_of_a_connection_is_told_the_key_it_is_a_typo_of(
    tmp_path: Path, text: str, message: str
) -> None:
    assert message in refusal_of_settings_file(tmp_path, text).split("; ")


def test_an_unknown_key_of_the_approvers_file_is_told_the_key_it_is_a_typo_of(
    tmp_path: Path,
) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text("by_rul:\n  restart: [alice]\n")
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    assert caught.value.message == (
        f"REMEDIATOR_APPROVERS_FILE: {approvers}: by_rul: unknown key (did you mean 'by_rule'?)"
    )


# A secret written where a key goes (a DSN pasted one line up), and keys holding an escape
# sequence (YAML's "\e": a file may hold one written so): quoted whole in the error, the
# secret reached the logs and the escape the operator's terminal.
SECRET_KEY = "postgres://remediator:hunter2@db:5432/orders"


def test_an_unknown_key_of_the_approvers_file_that_is_no_name_is_not_shown(
    tmp_path: Path,
) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(
        f'"{SECRET_KEY}": [alice]\n"by_rule\\e[2J": {{}}\nby_risk: {{"low\\e]0;x": [bob]}}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    message = caught.value.message
    assert "hunter2" not in message, message
    assert "\x1b" not in message, message
    assert message.count("file: a key that is no key's name (not shown") == 2, message
    assert "this takes by_rule, by_risk, default, slack_users" in message
    assert "by_risk: Value error, unknown risk (a key not shown); use low or high" in message


def test_a_key_of_the_approvers_file_given_twice_is_named_only_when_it_is_a_name(
    tmp_path: Path,
) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(f'"{SECRET_KEY}": [alice]\n"{SECRET_KEY}": [bob]\n')
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    assert caught.value.message == (
        f"REMEDIATOR_APPROVERS_FILE: {approvers}:2: invalid YAML: a key is given twice (first"
        " at line 1; not shown: no key's name)"
    )
    approvers.write_text("default: [alice]\ndefault: [bob]\n")
    with pytest.raises(ConfigError, match="duplicate key 'default' "):
        load_approvals(Settings(approvers_file=approvers))


def test_an_unknown_key_of_a_connection_that_is_no_name_is_not_shown(tmp_path: Path) -> None:
    text = f'postgres:\n  databases:\n    "ord\\eers": {{dsn_file: /run/dsn, "{SECRET_KEY}": 1}}\n'
    message = refusal_of_settings_file(tmp_path, text)
    assert "hunter2" not in message, message
    assert "\x1b" not in message, message
    assert (
        "postgres.databases.ord\\x1bers: a key that is no key's name (not shown: a value"
        " written as a key?); this takes dsn_file, statement_timeout, timeout, max_connections"
    ) in message, message
