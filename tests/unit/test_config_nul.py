"""U+0000 in any setting is refused at load time, naming the key: PostgreSQL cannot store it,
and `serve` used to start both stores and crash on the first audit row (exit 1, a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from tests.support.config import refusal

NUL_MESSAGE = "the value contains a NUL character (U+0000), which is not allowed"


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ('http: {host: "127.0.0.1\\0"}', "http.host"),
        ('log: {level: "info\\0"}', "log.level"),
        ('auth: {token: "a-long-enough-token\\0x"}', "auth.token"),  # a secret: never quoted
        ('namespaces: {allow: [shop, "web\\0"]}', "namespaces.allow.1"),
        (
            'postgres: {databases: {orders: {dsn: "postgresql://u:p@h/d\\0"}}}',
            "postgres.databases.orders.dsn",
        ),
    ],
)
def test_a_nul_in_a_config_file_value_is_refused_naming_the_key(
    tmp_path: Path, yaml_text: str, key: str
) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text(yaml_text + "\n")
    message = refusal({}, config)
    assert message.startswith(f"{key}: {NUL_MESSAGE}")
    assert "\0" not in message


def test_a_nul_in_a_variable_is_refused_naming_it() -> None:
    # The OS cannot pass one in a real environment; a mapping given in code can.
    message = refusal({"REMEDIATOR_EXTERNAL_URL": "https://remediator.example\0"})
    assert message.startswith(f"REMEDIATOR_EXTERNAL_URL: {NUL_MESSAGE}")


@pytest.mark.parametrize("command", ["lint", "serve"])
def test_the_cli_exits_2_before_starting_anything(tmp_path: Path, command: str) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text('http: {host: "127.0.0.1\\0"}\n')
    result = CliRunner().invoke(main, ["--config", str(config), command], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"http.host: {NUL_MESSAGE}" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("variable", "text", "others"),
    [
        ("REMEDIATOR_WEBHOOK_TOKEN_FILE", "a-long-enough-token\0tail\n", {}),
        ("REMEDIATOR_WEBHOOK_PASSWORD_FILE", "hunter2\0\n", {"REMEDIATOR_WEBHOOK_USERNAME": "am"}),
    ],
)
def test_a_nul_in_a_secret_file_is_refused_naming_the_file_not_the_secret(
    tmp_path: Path, variable: str, text: str, others: dict[str, str]
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(text)
    message = refusal({variable: str(secret), **others})
    assert message.startswith(f"{variable}: secret file {secret} contains a NUL character")
    assert text.split("\0")[0] not in message


def test_a_nul_in_an_operator_token_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "alice").write_text("alice-token-0123456789\0")
    message = refusal({"REMEDIATOR_OPERATOR_TOKENS_DIR": str(tmp_path)})
    assert "contains a NUL character" in message
    assert "alice-token" not in message
