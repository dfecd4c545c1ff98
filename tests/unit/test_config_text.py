"""A settings file or variable that is not text the service can keep: bytes that are not UTF-8
(a file saved in Latin-1, a variable set from a non-UTF-8 shell), a recursive YAML alias. Each
is refused at load time in one line naming the file or the key, never quoting a secret: `serve`
used to crash with a traceback (a variable's byte after both stores had started, when the
rules' digest was encoded), `lint` and every other command on a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.config import ConfigError, Settings, load_settings
from receiver.config.approvals import load_approvals
from receiver.config.files import MAX_CONFIG_FILE_BYTES
from tests.support.config import refusal

NOT_UTF8 = "the value is not UTF-8 text"


def test_a_config_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_bytes(b"http:\n  host: caf\xe9\n")
    assert (
        refusal({}, config)
        == f"{config}: cannot read config file: it is not UTF-8 text: save it as UTF-8"
    )


def test_a_secret_file_that_is_not_utf8_does_not_quote_its_bytes(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_bytes(b"a-long-enough-token-\xff\n")
    message = refusal({"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(secret)})
    assert message == (
        f"REMEDIATOR_WEBHOOK_TOKEN_FILE: cannot read secret file {secret}: it is not UTF-8 text:"
        " save it as UTF-8"
    )


# What os.environ holds for a byte that is not UTF-8 (surrogateescape): b"\xff" -> "\udcff".
@pytest.mark.parametrize(
    "variable",
    ["REMEDIATOR_RULES_DIR", "REMEDIATOR_WEBHOOK_TOKEN", "REMEDIATOR_DATABASE_URL"],
)
def test_a_variable_that_is_not_utf8_is_refused_without_quoting_it(variable: str) -> None:
    value = os.fsdecode(b"postgresql://u:s3cr\xffet@db/remediator")
    message = refusal({variable: value})
    assert message.startswith(f"{variable}: {NOT_UTF8}")
    assert "s3cr" not in message
    assert "\udcff" not in message


def test_a_surrogate_escape_in_the_config_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text('namespaces: {allow: [shop, "web\\udcff"]}\n')
    assert refusal({}, config).startswith(f"namespaces.allow.1: {NOT_UTF8}")


@pytest.mark.parametrize(
    "text", ["http: &h {port: 9096, again: *h}\n", "namespaces:\n  allow: &a [shop, *a]\n"]
)
def test_a_recursive_alias_in_the_config_file_names_the_file_and_line(
    tmp_path: Path, text: str
) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text(text)
    assert refusal({}, config).startswith(f"{config}:")
    assert "recursive YAML alias" in refusal({}, config)


def test_a_recursive_alias_in_the_approvers_file_names_it(tmp_path: Path) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text("default: &d [alice, *d]\n")
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    assert caught.value.message == (
        f"REMEDIATOR_APPROVERS_FILE: {approvers}:1: invalid YAML: recursive YAML alias"
        " (a value that contains itself)"
    )


@pytest.mark.parametrize(
    ("content", "env"),
    [
        (b"http: {host: caf\xe9}\n", {}),
        (b"a: &x {b: *x}\n", {}),
        (b"dry_run: auto\n", {"REMEDIATOR_RULES_DIR": os.fsdecode(b"rules\xff")}),
    ],
)
def test_the_cli_exits_2_in_one_line(tmp_path: Path, content: bytes, env: dict[str, str]) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_bytes(content)
    result = CliRunner().invoke(main, ["--config", str(config), "lint"], env=env)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: configuration: ")
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("key", ["log.level", "external_url", "namespaces.allow.0"])
def test_a_value_too_long_for_any_setting_is_refused_without_quoting_it(
    tmp_path: Path, key: str
) -> None:
    # The value was quoted whole: a 10 MB error line, after 7 s of validating it.
    value = "a" * 1_000_001
    config = tmp_path / "remediator.yaml"
    section, _, rest = key.partition(".")
    if rest == "allow.0":
        config.write_text(f"namespaces:\n  allow: [{value}]\n")
    elif rest:
        config.write_text(f"{section}:\n  {rest}: {value}\n")
    else:
        config.write_text(f"{key}: {value}\n")
    assert refusal({}, config) == (
        f"{key}: the value is 1,000,001 characters; no setting takes more than 65,536"
    )


TOO_LARGE = "larger than 1 MiB: is it the right file?"


def test_a_config_file_over_the_bound_is_refused_unparsed(tmp_path: Path) -> None:
    # A 10 MB file (a log named by mistake) took 7 s of YAML parsing before it was refused.
    config = tmp_path / "remediator.yaml"
    config.write_text("# padding\n" * (MAX_CONFIG_FILE_BYTES // 10) + "dry_run: true\n")
    assert refusal({}, config) == f"{config}: cannot read config file: {TOO_LARGE}"


def test_a_config_file_at_the_bound_is_read(tmp_path: Path) -> None:
    config = tmp_path / "remediator.yaml"
    line = "dry_run: true\n"
    config.write_text("#" * (MAX_CONFIG_FILE_BYTES - len(line) - 1) + "\n" + line)
    assert config.stat().st_size == MAX_CONFIG_FILE_BYTES
    assert load_settings(config, {}).dry_run == "true"


def test_an_endless_file_is_refused_not_read_for_ever() -> None:
    # /dev/zero named as the settings file or a secret file: read_text never returned.
    assert refusal({}, Path("/dev/zero")) == f"/dev/zero: cannot read config file: {TOO_LARGE}"
    assert refusal({"REMEDIATOR_WEBHOOK_TOKEN_FILE": "/dev/zero"}) == (
        f"REMEDIATOR_WEBHOOK_TOKEN_FILE: cannot read secret file /dev/zero: {TOO_LARGE}"
    )


def test_an_approvers_file_over_the_bound_is_refused(tmp_path: Path) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_bytes(b"default: [alice]\n" + b"#" * MAX_CONFIG_FILE_BYTES)
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    assert caught.value.message == (
        f"REMEDIATOR_APPROVERS_FILE: cannot read approvers file {approvers}: {TOO_LARGE}"
    )


def test_an_operator_token_file_with_a_byte_order_mark_is_read_without_it(
    tmp_path: Path,
) -> None:
    # The server's side of the CLI's token file: both read the token without the mark.
    from receiver.config.operators import read_operator_tokens

    (tmp_path / "alice").write_bytes(b"\xef\xbb\xbf" + b"a" * 20 + b"\n")
    tokens = read_operator_tokens(tmp_path, "REMEDIATOR_OPERATOR_TOKENS_DIR")
    assert tokens["alice"].get_secret_value() == "a" * 20
