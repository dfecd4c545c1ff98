"""Integer arguments of the CLI (ids, limits, a port, a progress interval) are ASCII digits:
click's int type called int(), which reads other scripts' digits as numbers, so `events retry`
given an Arabic-Indic one retried event 1, `jobs drop 1_0` dropped job 10 and `serve --port`
given 9095 in Arabic-Indic digits listened on 9095. Each is now a usage error naming the
argument (exit 2), before anything is sent or opened."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.cli.common import Integer

URL = ["--url", "http://127.0.0.1:1"]


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["events", "retry", "\u0661", *URL], "'ID...'"),
        (["events", "drop", "1", "\u0662", "--reason", "x", *URL], "'ID...'"),
        (["jobs", "retry", "1_0", *URL], "'ID...'"),
        (["events", "show", "\uff11", *URL], "'ID'"),
        (["jobs", "show", " 7", *URL], "'ID'"),
        (["runs", "--limit", "\u0665", *URL], "'--limit'"),
        (["events", "--limit", "\u0665", *URL], "'--limit'"),
        (["jobs", "--limit", "+5", *URL], "'--limit'"),
        (["approvals", "list", "--limit", "\u0665", *URL], "'--limit'"),
        (["serve", "--port", "\u0669\u0660\u0669\u0665"], "'--port'"),
        (["audit", "verify", "--progress-every", "\u0665"], "'--progress-every'"),
        (["audit", "export", "--after", "\u0665"], "'--after'"),
    ],
)
def test_an_integer_in_other_digits_is_a_usage_error_naming_its_argument(
    tmp_path: Path, args: list[str], shown: str
) -> None:
    # A request or a database connection that got through would fail the test (unit conftest).
    result = CliRunner().invoke(
        main,
        args,
        env={
            "REMEDIATOR_DATA_DIR": str(tmp_path),
            "REMEDIATOR_OPERATOR_TOKEN": "x" * 20,
            "REMEDIATOR_DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
        },
    )
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {shown}: " in result.stderr
    assert "is not an integer: write it with the digits 0-9" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "show", "0"], "0 is not in 1..9223372036854775807"),
        (["audit", "export", "--after", "9" * 20], f"{'9' * 20} is not in 0.."),
        # An id is never negative: README, "CLI" (ASCII digits 0-9); all was exported.
        (["audit", "export", "--after", "-1"], "-1 is not in 0.."),
        (["serve", "--port", "70000"], "70000 is not in 0..65535"),
        (["approvals", "list", "--limit", "501"], "501 is not in 1..500"),
        # Every list's --limit, as its help says (1..500), before anything is sent: runs sent
        # it and exited 1 on the server's 400 (approvals list: 2), and events and jobs sent no
        # limit for 0 and listed 50.
        (["runs", "--limit", "0"], "0 is not in 1..500"),
        (["events", "--limit", "501"], "501 is not in 1..500"),
        (["jobs", "--limit", "0"], "0 is not in 1..500"),
    ],
)
def test_an_integer_out_of_its_range_is_a_usage_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, args, env={"REMEDIATOR_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_ascii_digits_are_read() -> None:
    read = Integer(-5, 10**30)
    texts = ("0", "42", "-5", "007", "9" * 30, "0" * 40 + "1")
    assert [read.convert(t, None, None) for t in texts] == [0, 42, -5, 7, 10**30 - 1, 1]
    with pytest.raises(click.BadParameter, match="is not in -5"):
        read.convert("9" * 5000, None, None)
