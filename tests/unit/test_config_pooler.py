"""database.pooler and database.direct_url: what a transaction pooler needs, refused when it
cannot work, and today's direct behaviour by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, Settings, load_settings
from receiver.config.settings import DatabasePooler
from receiver.store.database import connect_options

DIRECT = "postgresql://remediator:pw@db:5432/remediator"
POOLED = "postgresql://remediator:pw@pgbouncer:6432/remediator"


def test_the_default_is_a_direct_connection_with_the_statement_cache() -> None:
    settings = load_settings(None, {"REMEDIATOR_DATABASE_URL": DIRECT})
    assert settings.database_pooler is DatabasePooler.NONE
    assert not settings.transaction_pooled
    assert settings.database_direct_url is None
    assert connect_options(transaction_pooled=settings.transaction_pooled) == {}


def test_a_transaction_pooler_turns_the_statement_cache_off(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database_url: {POOLED}\n"
        "database:\n"
        "  pooler: pgbouncer-transaction\n"
        f"  direct_url: {DIRECT}\n"
    )
    settings = load_settings(config, {})
    assert settings.transaction_pooled
    assert settings.database_direct_url is not None
    assert settings.database_direct_url.get_secret_value() == DIRECT
    assert connect_options(transaction_pooled=True) == {"statement_cache_size": 0}


@pytest.mark.parametrize("value", ["pgbouncer", "transaction", "session", "yes"])
def test_an_unknown_pooler_is_refused_naming_the_choices(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            None, {"REMEDIATOR_DATABASE_URL": POOLED, "REMEDIATOR_DATABASE_POOLER": value}
        )
    assert info.value.message.startswith("REMEDIATOR_DATABASE_POOLER: ")
    assert "none, pgbouncer-transaction" in info.value.message


def refusal_behind_the_pooler(environ: dict[str, str]) -> str:
    """The message of the ConfigError that settings behind a transaction pooler get."""
    with pytest.raises(ConfigError) as info:
        load_settings(
            None,
            {
                "REMEDIATOR_DATABASE_URL": POOLED,
                "REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction",
                **environ,
            },
        )
    return info.value.message


def test_a_transaction_pooler_without_a_direct_url_is_refused() -> None:
    message = refusal_behind_the_pooler({})
    assert message.startswith(
        "database.direct_url (REMEDIATOR_DATABASE_DIRECT_URL): required with "
    )
    assert "LISTEN" in message
    assert "pw" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REMEDIATOR_DATABASE_POOLER", "pgbouncer-transaction"),
        ("REMEDIATOR_DATABASE_DIRECT_URL", DIRECT),
    ],
)
def test_pooler_settings_without_a_database_url_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {name: value})
    assert info.value.message.startswith(
        f"{name}: only with database_url (REMEDIATOR_DATABASE_URL)"
    )


def test_saying_none_without_a_database_url_is_fine() -> None:
    assert not load_settings(None, {"REMEDIATOR_DATABASE_POOLER": "none"}).transaction_pooled


def test_a_direct_url_that_is_not_postgresql_is_refused_without_quoting_it() -> None:
    environ = {
        "REMEDIATOR_DATABASE_URL": DIRECT,
        "REMEDIATOR_DATABASE_DIRECT_URL": "redis://:hunter2@db:6379/0",
    }
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ)
    assert info.value.message.startswith("REMEDIATOR_DATABASE_DIRECT_URL: not a PostgreSQL URL")
    assert "hunter2" not in info.value.message


def test_the_direct_url_is_a_secret() -> None:
    settings = Settings.model_validate({"database_url": DIRECT, "database_direct_url": DIRECT})
    assert "pw" not in repr(settings)


@pytest.mark.parametrize(
    "direct",
    [
        POOLED,
        "postgresql://other:pw2@pgbouncer:6432/remediator",
        "postgres://remediator:pw@PgBouncer:6432/other?sslmode=require",
    ],
)
def test_a_direct_url_that_names_the_pooler_is_refused(direct: str) -> None:
    """The worker's LISTEN through the pooler is silently lost: a direct URL at the pooler's
    own host and port is the mistake the setting exists to prevent, refused, not run."""
    message = refusal_behind_the_pooler({"REMEDIATOR_DATABASE_DIRECT_URL": direct})
    assert message.startswith("REMEDIATOR_DATABASE_DIRECT_URL: names pgbouncer:6432")
    assert "REMEDIATOR_DATABASE_URL" in message
    assert "pw" not in message


def test_a_pooler_at_an_ipv6_address_is_named_in_brackets() -> None:
    # `names ::1:6432` read as one address, of which 6432 might be a part.
    pooled = "postgresql://remediator:pw@[::1]:6432/remediator"
    with pytest.raises(ConfigError) as info:
        load_settings(
            None,
            {
                "REMEDIATOR_DATABASE_URL": pooled,
                "REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction",
                "REMEDIATOR_DATABASE_DIRECT_URL": pooled,
            },
        )
    assert info.value.message.startswith("REMEDIATOR_DATABASE_DIRECT_URL: names [::1]:6432, ")


def test_a_direct_url_on_the_poolers_host_at_another_port_is_fine() -> None:
    environ = {
        "REMEDIATOR_DATABASE_URL": "postgresql://remediator:pw@db:6432/remediator",
        "REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction",
        "REMEDIATOR_DATABASE_DIRECT_URL": DIRECT,
    }
    assert load_settings(None, environ).transaction_pooled


def test_a_port_of_zero_is_not_read_as_postgresqls_default() -> None:
    """``db:0`` and ``db`` (5432) are not one address: the pooler's refusal would name the
    wrong mistake ("names db:5432, the pooler's address") for a direct URL that is not it."""
    environ = {
        "REMEDIATOR_DATABASE_URL": "postgresql://remediator:pw@db/remediator",
        "REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction",
        "REMEDIATOR_DATABASE_DIRECT_URL": "postgresql://remediator:pw@db:0/remediator",
    }
    assert load_settings(None, environ).transaction_pooled


def test_a_direct_url_missing_from_the_file_is_named_as_the_file_and_the_variable(
    tmp_path: Path,
) -> None:
    """Neither was written: the message names both, not the variable alone to a user of the
    YAML file; the pooler, written in the file, is named as written."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database_url: {POOLED}\ndatabase:\n  pooler: pgbouncer-transaction\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config, {})
    assert info.value.message.startswith(
        "database.direct_url (REMEDIATOR_DATABASE_DIRECT_URL): required with"
        " database.pooler=pgbouncer-transaction: "
    )
