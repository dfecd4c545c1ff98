"""A path setting given empty is refused naming it, in a variable or the settings file.
``Path("")`` is ``.``: ``REMEDIATOR_OPERATOR_TOKENS_DIR=`` (a template's variable left empty)
read every file of the working directory as an operator's token, named after the file,
``REMEDIATOR_APPROVAL_KEYS_DIR=`` every file as a key that signs approval links,
``REMEDIATOR_DATA_DIR=`` put the embedded servers and the generated tokens there, and
``REMEDIATOR_RULES_DIR=`` loaded whatever YAML was there as rules. A path left out (or YAML's
empty value, null) keeps its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import KEYS, ConfigError, Key, Settings, load_settings

PATHS = [key for key in KEYS if "pathlib.Path" in str(Settings.model_fields[key.field].annotation)]
EMPTY = "empty: give the path, or leave the setting out for its default (an empty path is the"


def test_every_file_and_directory_setting_is_checked() -> None:
    # The settings that name a file or a directory, as the README's table lists them: a new
    # one gets the same refusal by its type (SettingPath), not by being listed here.
    assert {key.field for key in PATHS} == {
        "redis_password_file",
        "redis_sentinel_password_file",
        "redis_tls_ca_file",
        "redis_tls_cert_file",
        "redis_tls_key_file",
        "webhook_token_file",
        "webhook_password_file",
        "operator_tokens_dir",
        "operator_token_file",
        "rules_dir",
        "data_dir",
        "kubeconfig",
        "approval_keys_dir",
        "approvers_file",
        "slack_signing_secret_file",
    }


@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "blank"])
@pytest.mark.parametrize("env", [key.env for key in PATHS])
def test_an_empty_variable_is_refused_naming_it(env: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(None, {env: value})
    assert refused.value.message.startswith(f"{env}: {EMPTY}"), refused.value.message


@pytest.mark.parametrize("key", PATHS, ids=[key.yaml for key in PATHS])
def test_an_empty_value_in_the_file_is_refused_naming_its_key(tmp_path: Path, key: Key) -> None:
    *sections, leaf = key.yaml.split(".")
    text = "".join(f"{'  ' * depth}{name}:\n" for depth, name in enumerate(sections))
    text += f'{"  " * len(sections)}{leaf}: ""\n'
    config = tmp_path / "remediator.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_settings(config, {})
    assert f"{key.yaml}: {EMPTY}" in refused.value.message, refused.value.message


def test_the_working_directory_files_are_no_operators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file that reads as a token, where the service was started: it was operator 'notes'.
    (tmp_path / "notes").write_text("remember-the-milk-0123456789\n")
    (tmp_path / "notes").chmod(0o600)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        load_settings(None, {"REMEDIATOR_OPERATOR_TOKENS_DIR": ""})
    assert refused.value.message.startswith("REMEDIATOR_OPERATOR_TOKENS_DIR: empty")


def test_a_null_in_the_file_leaves_the_setting_out(tmp_path: Path) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text("approvals:\n  keys_dir:\n  approvers_file:\n")
    settings = load_settings(config, {})
    assert settings.approval_keys_dir is None
    assert settings.approvers_file is None
    assert load_settings(None, {}).data_dir == Path(".data")


@pytest.mark.parametrize("key", ["rules_dir", "data_dir"])
def test_a_null_where_the_setting_cannot_be_unset_is_told_as_empty(
    tmp_path: Path, key: str
) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text(f"{key}:\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, {})
    assert refused.value.message.startswith(f"{key}: {EMPTY}"), refused.value.message
