"""The CLI refuses what the server would refuse, before calling it: a ``--url`` that is no server
URL and a ``--reason`` blank or longer than 1000 characters are usage errors (exit 2) naming
the option, for every command that takes them."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from receiver.cli import main

# An approval's id as the server makes one (a UUID).
APPROVAL = "0b5e4f6a-1c2d-4e3f-8a9b-0c1d2e3f4a5b"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every command under ``group``."""
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def _takes(path: tuple[str, ...], option: str) -> bool:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return any(option in p.opts for p in command.params)


def _required_args(path: tuple[str, ...]) -> list[str]:
    """Values for the required arguments and options of ``path`` (ids, a reason)."""
    args: dict[tuple[str, ...], list[str]] = {
        ("approvals", "approve"): [APPROVAL],
        ("approvals", "reject"): [APPROVAL, "--reason", "x"],
    }
    if path[-1] in ("retry", "drop", "show"):
        return ["1", *(["--reason", "x"] if path[-1] == "drop" else [])]
    if path == ("pause",):
        return ["--reason", "x"]
    return args.get(path, [])


OPERATOR_COMMANDS = [p for p in _commands(main) if _takes(p, "--url")]


def test_the_operator_commands_are_all_found() -> None:
    assert {("runs",), ("pause",), ("resume",), ("status",), ("approvals", "list")} <= set(
        OPERATOR_COMMANDS
    )
    assert ("events", "retry") in OPERATOR_COMMANDS


@pytest.mark.parametrize("path", OPERATOR_COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://h/x",
        "http://h:notaport",
        "http://",
        "http://h:1/path",
        "http://h:1/?a=b",
        # aiohttp raised "Cannot combine AUTHORIZATION header with ... credentials encoded in
        # URL" as a traceback (security review); the password is never echoed.
        "http://user:pw-s3cret@127.0.0.1:1",
        "http://[::1",
        "http://127.0.0.1:99999",
    ],
)
def test_a_url_that_is_no_server_url_is_a_usage_error(path: tuple[str, ...], url: str) -> None:
    result = CliRunner().invoke(main, [*path, *_required_args(path), "--url", url], env={})
    assert result.exit_code == 2, result.output
    assert "'--url'" in result.stderr
    assert "Traceback" not in result.output
    assert "s3cret" not in result.output


REASON_COMMANDS = [p for p in _commands(main) if _takes(p, "--reason")]


def test_the_reason_commands_are_all_found() -> None:
    assert {
        ("pause",),
        ("approvals", "approve"),
        ("approvals", "reject"),
        ("events", "retry"),
        ("events", "drop"),
        ("jobs", "retry"),
        ("jobs", "drop"),
    } == set(REASON_COMMANDS)


@pytest.mark.parametrize("path", REASON_COMMANDS, ids=" ".join)
def test_a_reason_over_1000_characters_is_a_usage_error(path: tuple[str, ...]) -> None:
    args = [a for a in _required_args(path) if a not in ("--reason", "x")]
    # A server that is not there: the command must stop before calling it.
    result = CliRunner().invoke(
        main, [*path, *args, "--reason", "x" * 1001, "--url", "http://127.0.0.1:1"], env={}
    )
    assert result.exit_code == 2, result.output
    assert "'--reason'" in result.stderr
    assert "1001 characters; at most 1000" in result.stderr


@pytest.mark.parametrize("path", REASON_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_a_blank_reason_is_a_usage_error(path: tuple[str, ...], blank: str) -> None:
    # `events drop 1 2 3 --reason " "` sent three requests and printed three 400s (exit 1).
    args = [a for a in _required_args(path) if a not in ("--reason", "x")]
    if path[-1] in ("retry", "drop"):
        args += ["2", "3"]
    result = CliRunner().invoke(
        main, [*path, *args, "--reason", blank, "--url", "http://127.0.0.1:1"], env={}
    )
    assert result.exit_code == 2, result.output
    assert "'--reason': blank: say why (it goes into the audit log)" in result.stderr
    assert result.stdout == ""
    # Where the reason may be left out, the error says so.
    assert ("or leave --reason out" in result.stderr) == (path[-1] in ("retry", "approve"))


@pytest.mark.parametrize("path", REASON_COMMANDS, ids=" ".join)
def test_a_reason_not_utf8_is_one_usage_error_before_anything_is_sent(
    path: tuple[str, ...],
) -> None:
    # `events drop 1 2 --reason $'caf\xe9'` (a latin-1 shell) printed "not UTF-8 text" once per
    # id, exit 1, where a blank or long reason is one usage error, exit 2.
    args = [a for a in _required_args(path) if a not in ("--reason", "x")]
    if path[-1] in ("retry", "drop"):
        args += ["2", "3"]
    reason = b"caf\xe9".decode("utf-8", "surrogateescape")
    result = CliRunner().invoke(
        main, [*path, *args, "--reason", reason, "--url", "http://127.0.0.1:1"], env={}
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.endswith(
        "error: --reason: not UTF-8 text (a byte the shell passed is not UTF-8); nothing was sent\n"
    ), result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("duration", ["500ms", "0s", "8d", "soon"])
def test_a_pause_outside_1s_to_7d_is_a_usage_error(duration: str) -> None:
    result = CliRunner().invoke(
        main, ["pause", "--reason", "x", "--for", duration, "--url", "http://127.0.0.1:1"], env={}
    )
    assert result.exit_code == 2, result.output
    assert "'--for'" in result.stderr


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("--database-url", "not a PostgreSQL URL: the scheme must be postgresql://"),
        ("--redis-url", "not a Redis URL: the scheme must be redis://"),
    ],
)
def test_a_rule_test_server_url_that_is_no_url_is_a_usage_error(option: str, says: str) -> None:
    result = CliRunner().invoke(main, ["test", option, "garbage", "rules/tests/high-memory.yaml"])
    assert result.exit_code == 2, result.output
    assert f"'{option}'" in result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.output


PASSWORD = "s3cr%40t-pw"  # percent-encoded: a client could quote it either way


@pytest.mark.parametrize(
    "command", [["audit", "export"], ["audit", "verify"], ["migrate"]], ids=" ".join
)
def test_a_database_url_asyncpg_cannot_read_is_a_configuration_error(command: list[str]) -> None:
    # asyncpg reads the DSN's parameters when it connects: no server is needed to find it bad.
    url = f"postgresql://u:{PASSWORD}@127.0.0.1:1/db?sslmode=bogus"
    result = CliRunner().invoke(main, command, env={"REMEDIATOR_DATABASE_URL": url})
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        "error: configuration: REMEDIATOR_DATABASE_URL: not a PostgreSQL URL: `sslmode`"
    ), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "s3cr" not in result.output


def test_a_bad_target_session_attrs_is_told_the_values_it_takes() -> None:
    # asyncpg's own message names them by a method's repr ("one of <built-in method values of
    # mappingproxy object at 0x...>"); the user is told libpq's list instead.
    url = f"postgresql://u:{PASSWORD}@127.0.0.1:1/db?target_session_attrs=bogus"
    result = CliRunner().invoke(main, ["migrate"], env={"REMEDIATOR_DATABASE_URL": url})
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "error: configuration: REMEDIATOR_DATABASE_URL: not a PostgreSQL URL: "
        "target_session_attrs must be one of any, read-write, read-only, primary, standby, "
        "prefer-standby; got 'bogus'\n"
    )
