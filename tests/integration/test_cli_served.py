"""The CLI as an operator runs it against a real `remediator serve`: where its commands go when
no --url is given, and what a 401 says to set."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.support.daemons import end
from tests.support.served import ServeFactory, cli, env_for, launch

# A port nothing should listen on: the default (9095) may be some other serve on this machine.
ELSEWHERE_PORT = "9"


async def test_a_configured_token_goes_to_the_serve_on_the_data_directory(
    serve: ServeFactory, embedded_dir: Path
) -> None:
    served = serve()
    env = env_for(embedded_dir) | {"REMEDIATOR_OPERATOR_TOKEN": served.operator}
    for command in (["runs"], ["events"], ["status"], ["approvals", "list"]):
        code, _, err = await cli(env, *command)
        assert code == 0, f"{command}: {err}"
        assert "warning" not in err
    # A configured port names a server: the CLI goes there, not to the record's.
    code, _, err = await cli(env | {"REMEDIATOR_PORT": ELSEWHERE_PORT}, "runs")
    assert code != 0
    assert f"127.0.0.1:{ELSEWHERE_PORT}" in err


async def test_a_configured_port_is_where_the_generated_token_commands_go_and_it_is_not_sent(
    serve: ServeFactory, embedded_dir: Path
) -> None:
    # The embedded default's own token, no REMEDIATOR_OPERATOR_TOKEN: a port set to reach
    # another server was ignored, and `pause` paused the serve on the data directory.
    serve()
    env = env_for(embedded_dir)
    code, out, err = await cli(
        env | {"REMEDIATOR_PORT": ELSEWHERE_PORT}, "pause", "--reason", "maintenance"
    )
    assert code != 0, out
    assert f"no operator token was sent to http://127.0.0.1:{ELSEWHERE_PORT}" in err
    assert f"cannot reach the service at http://127.0.0.1:{ELSEWHERE_PORT}" in err
    code, out, err = await cli(env, "status", "--json")
    assert code == 0, err
    assert json.loads(out)["paused"] is False


async def test_with_configured_operators_the_banner_command_works_and_a_401_says_what_to_set(
    embedded_dir: Path, tmp_path: Path
) -> None:
    operators = tmp_path / "operators"
    operators.mkdir()
    (operators / "alice").write_text("alice-operator-token-0123456789\n")
    env = env_for(embedded_dir) | {"REMEDIATOR_OPERATOR_TOKENS_DIR": str(operators)}
    proc, _, output = launch(env)
    try:
        banner = "".join(output)
        suggested = re.search(r"then list the runs:\s+(.*?) runs\s", banner)
        assert suggested is not None, banner
        words = shlex.split(suggested.group(1))
        assert f"REMEDIATOR_OPERATOR_TOKEN_FILE={operators / 'alice'}" in words
        assignments = dict(w.split("=", 1) for w in words if "=" in w)
        code, _, err = await cli(env_for(embedded_dir) | assignments, "runs")
        assert code == 0, err

        # Without a token of theirs: refused, and the message says what to set.
        code, _, err = await cli(env_for(embedded_dir), "runs")
        assert code != 0
        assert "HTTP 401" in err
        assert "its operators are configured (REMEDIATOR_OPERATOR_TOKENS_DIR)" in err
        assert "set REMEDIATOR_OPERATOR_TOKEN_FILE" in err
    finally:
        end(proc, 60)


async def test_on_external_stores_the_banner_command_finds_the_service(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    # No embedded server, so no record in the data directory says where serve answers: the
    # command must say it itself (a tester's, on a port from the config file, went to 9095).
    operators = tmp_path / "operators"
    operators.mkdir()
    (operators / "alice").write_text("alice-operator-token-0123456789\n")
    webhook = tmp_path / "webhook-token"
    webhook.write_text("webhook-token-0123456789abcdef\n")
    env = env_for(tmp_path / "data") | {
        "REMEDIATOR_DATABASE_URL": database_url,
        "REMEDIATOR_REDIS_URL": redis_url,
        "REMEDIATOR_OPERATOR_TOKENS_DIR": str(operators),
        "REMEDIATOR_WEBHOOK_TOKEN_FILE": str(webhook),
    }
    proc, url, output = launch(env)
    try:
        banner = "".join(output)
        suggested = re.search(r"then list the runs:\s+(.*?)\s{3}\(or curl", banner)
        assert suggested is not None, banner
        words = shlex.split(suggested.group(1))
        assert words[-2:] == ["--url", url], words
        assignments = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
        command = [w for w in words if "=" not in w or w.startswith("-")]
        runs = command.index("runs")
        # Run from the CLI's defaults (no REMEDIATOR_PORT: serve's came from --port), with only
        # what the banner's command sets.
        code, out, err = await cli(env_for(tmp_path / "data") | assignments, *command[runs:])
        assert code == 0, err
        assert out == "no runs\n"  # the service answered: a fresh store has none
    finally:
        end(proc, 60)


# Set for serve in an environment the CLI shares, neither names a server: REMEDIATOR_PORT=0
# (serve binds any free port and records it) made the CLI ask http://127.0.0.1:0, and
# REMEDIATOR_HOST=0.0.0.0 (serve listens on every interface; its port from --port) made it ask
# 127.0.0.1:9095, with the generated token or a configured one.
NAMING_NO_SERVER = {
    "port 0": {"REMEDIATOR_PORT": "0"},
    "wildcard host": {"REMEDIATOR_HOST": "0.0.0.0"},  # noqa: S104 - what is tested; serve lives for the test
}


@pytest.mark.parametrize("setting", NAMING_NO_SERVER.values(), ids=NAMING_NO_SERVER.keys())
async def test_a_setting_that_names_no_server_leaves_the_data_directorys_serve_to_answer(
    serve: ServeFactory, embedded_dir: Path, setting: dict[str, str]
) -> None:
    served = serve(setting)
    env = env_for(embedded_dir) | setting
    code, out, err = await cli(env, "status", "--json")
    assert code == 0, err
    assert "warning" not in err
    assert json.loads(out)["paused"] is False
    code, _, err = await cli(env | {"REMEDIATOR_OPERATOR_TOKEN": served.operator}, "runs")
    assert code == 0, err
