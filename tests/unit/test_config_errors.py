"""Settings refused: a bad variable or YAML value, size or key, a YAML syntax error, a key
given twice or a missing file, each an error that names the key (or file and line) to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings
from tests.support.config import write


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
