"""A listen address written as a URL, in brackets or with its port is a configuration error
naming the setting (exit 2), before anything starts: ``serve --host '[::1]'`` started the
embedded servers and then failed to listen on ``[[::1]]:9095``, "Name or service not known",
and ``--host 0.0.0.0:9096`` on ``[0.0.0.0:9096]:9095``. An IPv6 address is written bare
(README, "Configuration": ``REMEDIATOR_HOST``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main

BAD_HOSTS = [
    ("[::1]", "without brackets"),
    ("[::]", "without brackets"),
    ("http://0.0.0.0", "not a URL"),
    ("https://remediator.example.com", "not a URL"),
    ("0.0.0.0:9096", "REMEDIATOR_PORT"),
    ("localhost:9096", "REMEDIATOR_PORT"),
]


def _env(tmp_path: Path) -> dict[str, str]:
    # The data directory is a file: a start that got past the settings fails there (exit 1).
    data = tmp_path / "data"
    data.write_text("")
    return {"REMEDIATOR_DATA_DIR": str(data)}


@pytest.mark.parametrize(("host", "says"), BAD_HOSTS)
def test_a_host_option_that_is_no_address_is_a_usage_error(
    tmp_path: Path, host: str, says: str
) -> None:
    result = CliRunner().invoke(main, ["serve", "--host", host], env=_env(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --host: "), result.stderr
    assert says in result.stderr


@pytest.mark.parametrize(("host", "says"), BAD_HOSTS)
def test_a_host_setting_that_is_no_address_is_a_configuration_error(
    tmp_path: Path, host: str, says: str
) -> None:
    env = {**_env(tmp_path), "REMEDIATOR_HOST": host}
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 2, result.output
    assert "REMEDIATOR_HOST: " in result.stderr, result.stderr
    assert says in result.stderr


@pytest.mark.parametrize("host", ["::1", "::", "0.0.0.0", "localhost", "fe80::1%lo"])  # noqa: S104
def test_an_address_or_a_name_gets_past_the_settings(tmp_path: Path, host: str) -> None:
    result = CliRunner().invoke(main, ["serve", "--host", host], env=_env(tmp_path))
    assert result.exit_code == 1, result.output
    assert "the data directory" in result.stderr
