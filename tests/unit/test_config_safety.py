"""Settings that remove a safety are refused or said out loud:

- an empty namespace deny list (``REMEDIATOR_NAMESPACE_DENY=``) is refused; ``none`` or ``[]``
  says it on purpose, and what became allowed is a loud start-up notice (error log, banner);
- namespaces that are no DNS-1123 label are refused, naming the value;
- the SSO header trusted from every address (0.0.0.0/0, ::/0) is refused;
- a short webhook token is a warning; store URLs that cannot be read are refused without
  quoting the password; guard settings are bounded like rules;
- the banner says which store is embedded and carries the loud warnings.

Settings that are probably a typo: tests/unit/test_config_typos.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from receiver.config import ConfigError, Settings, load_settings
from receiver.config.approvals import load_approvals
from receiver.config.checks import newly_allowed, start_up_notices
from receiver.startup import Generated, banner, storage_text

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
